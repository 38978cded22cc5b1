"""PyTorch and ncps timings on the shapes of `remanence bench`.

A training step is forward, loss = sum(y * g) for a fixed random g, backward and an Adam update;
forward is the forward pass alone (no gradient recording). Median of --reps after --warmup.
Every measurement runs in a child process of its own, and its peak memory is the growth of that
process's peak resident set size over its start.
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(spec, a):
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cell, size = spec.split(":")
    size = int(size)
    x = torch.rand(a.batch, a.len, a.input) * 2 - 1
    base = peak_mib()
    if cell in ("rnn", "lstm", "gru"):
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        model = cls(a.input, size, batch_first=True)
        run = lambda: model(x)[0]
    else:
        import ncps.torch as nt

        model = nt.LTC(a.input, size, batch_first=True) if cell == "ltc" else nt.CfC(a.input, size, batch_first=True)
        run = lambda: model(x)[0]
    g = torch.rand_like(run().detach())
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train():
        opt.zero_grad()
        (run() * g).sum().backward()
        opt.step()

    def forward():
        with torch.no_grad():
            run().sum().item()

    out = {}
    for name, fn in (("forward_ms", forward), ("train_ms", train)):
        for _ in range(a.warmup):
            fn()
        times = []
        for _ in range(a.reps):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        out[name] = statistics.median(times)
    out["peak_mib"] = peak_mib() - base
    out["torch"] = torch.__version__
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--len", type=int, default=100)
    p.add_argument("--input", type=int, default=32)
    p.add_argument("--specs", default="rnn:128,rnn:256,lstm:128,lstm:256,gru:128,gru:256,cfc:64,cfc:128,ltc:64,ltc:128")
    p.add_argument("--only")
    a = p.parse_args()
    if a.only:
        print(json.dumps(measure(a.only, a)))
        return
    print(f"batch {a.batch}, length {a.len}, input {a.input}, f32, cpu, {a.threads} thread(s); median of {a.reps} reps after {a.warmup} warm-up")
    print(f"{'model':<6} {'size':>5} | {'train ms':>9} {'forward ms':>10} | {'peak MiB':>9}")
    for spec in a.specs.split(","):
        args = [sys.executable, __file__, "--only", spec, "--threads", str(a.threads), "--reps", str(a.reps),
                "--warmup", str(a.warmup), "--batch", str(a.batch), "--len", str(a.len), "--input", str(a.input)]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{spec}: failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")
            continue
        m = json.loads(r.stdout.strip().splitlines()[-1])
        cell, size = spec.split(":")
        print(f"{cell:<6} {size:>5} | {m['train_ms']:>9.1f} {m['forward_ms']:>10.1f} | {m['peak_mib']:>9.0f}   (torch {m['torch']})")


if __name__ == "__main__":
    main()
