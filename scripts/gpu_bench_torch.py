"""PyTorch's nn.RNN/LSTM/GRU (cuDNN on a GPU) on the shapes of `remanence bench`, in its units.

Shapes: batch 64 x length 100 x input 32 at each --hidden (default 128,256), then row-MNIST's
128 x 28 x 28 at hidden 128 (as `remanence bench`, unless --no-row-mnist). A training step is the
forward pass, loss = sum(y * g) for a fixed random g, backward and an Adam update (lr 1e-4); a
forward step is the forward pass alone under no_grad. Each is the median of --reps timed
repetitions after --warmup untimed ones, in milliseconds, with the device synchronised around
each repetition. GFLOP/s counts, as `remanence bench` does, 2*B*T*(I+H)*gates*H per forward
pass and three times that per training step. MiB is the growth of the device's peak allocated
memory (torch.cuda.max_memory_allocated) over the measurement's start; on the CPU it is the
process's peak resident size growth.

Usage (the GPU check runs this): python3 scripts/gpu_bench_torch.py [--device cuda] [--cells lstm,gru]
"""
import argparse
import resource
import statistics
import sys
import time

GATES = {"srn": 1, "lstm": 4, "gru": 3}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--cells", default="srn,lstm,gru", help="srn (nn.RNN tanh), lstm, gru")
    p.add_argument("--hidden", default="128,256")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--len", type=int, default=100)
    p.add_argument("--input", type=int, default=32)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", default="f32", choices=["f32", "f64"])
    p.add_argument("--no-row-mnist", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    a = p.parse_args()

    import torch

    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("torch sees no CUDA device")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dtype = torch.float32 if a.dtype == "f32" else torch.float64
    cells = [c.strip() for c in a.cells.split(",") if c.strip()]
    for c in cells:
        if c not in GATES:
            sys.exit(f"unknown cell {c}: one of {', '.join(GATES)}")
    hidden = [int(h) for h in a.hidden.split(",")]
    runs = [(c, h, (a.batch, a.len, a.input)) for c in cells for h in hidden]
    if not a.no_row_mnist:
        runs += [(c, 128, (128, 28, 28)) for c in cells]

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def median_ms(fn):
        for _ in range(a.warmup):
            fn()
        sync()
        times = []
        for _ in range(a.reps):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times)

    def peak():
        if cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    where = torch.cuda.get_device_name(dev) if cuda else "cpu"
    cudnn = torch.backends.cudnn.version() if cuda else None
    print(
        f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {cudnn}) on {where}; "
        f"{a.dtype}; median of {a.reps} reps after {a.warmup} warm-up; BxTxI = batch x steps x inputs"
    )
    print(f"{'cell':<6} {'BxTxI':>10} {'size':>5} {'pass':>7} | {'torch ms':>9} | {'GFLOP/s':>8} | {'MiB':>8}")
    for cell, h, (b, t, i) in runs:
        torch.manual_seed(0)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        base = peak()
        cls = {"srn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        model = cls(i, h, batch_first=True).to(device=dev, dtype=dtype)
        x = (torch.rand(b, t, i, device=dev, dtype=dtype) * 2 - 1)
        with torch.no_grad():
            g = torch.rand_like(model(x)[0])
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def train():
            opt.zero_grad(set_to_none=True)
            (model(x)[0] * g).sum().backward()
            opt.step()

        def forward():
            with torch.no_grad():
                model(x)[0].sum()

        fwd = median_ms(forward)
        trn = median_ms(train)
        mib = peak() - base
        flops = 2.0 * b * t * (i + h) * GATES[cell] * h
        label = f"{b}x{t}x{i}"
        for name, ms, mult in (("train", trn, 3.0), ("forward", fwd, 1.0)):
            print(f"{cell:<6} {label:>10} {h:>5} {name:>7} | {ms:>9.2f} | {flops * mult / (ms * 1e6):>8.1f} | {mib:>8.0f}")
        sys.stdout.flush()
        del model, opt, x, g


if __name__ == "__main__":
    main()
