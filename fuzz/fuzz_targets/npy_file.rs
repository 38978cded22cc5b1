#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    remanence_train::fuzzing::npy_file(data);
});
