"""The core: the sanitizer, its kernels, the knobs, the metrics and the runtime gamma controller."""
