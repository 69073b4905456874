"""The benchmark suite: latency, throughput, memory, accuracy and scalability of models
and of the service, hardware monitoring and profiler traces, and the report that puts
them in the original documentation's tables (`hamnet bench`)."""
