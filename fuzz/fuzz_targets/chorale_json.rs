#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    remanence_train::fuzzing::chorale_json(data);
});
