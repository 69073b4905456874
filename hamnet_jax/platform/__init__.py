"""What is specific to a backend or a CPU, each with the measurement that justifies it: the
allocator (tcmalloc / huge pages), programs compiled in the background, the matmul gradient
rule, unrolled Threefry bits, freed memory handed back to the OS."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "Compiling": "background_compile",
    "release_freed_memory": "freed_memory",
    "malloc_in_use": "host_memory",
    "reexec_with_fast_malloc": "host_memory",
    "without_gradient_rule": "matmul",
    "threefry_2x32": "random_bits",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
