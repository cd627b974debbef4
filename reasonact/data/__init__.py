"""Data (notebook 00): SynthAct, the benchmarks' official splits as manifests, the tiny Qwen2.5-VL and its
perception task."""
