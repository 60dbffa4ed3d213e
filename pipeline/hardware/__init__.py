"""How a stage uses the machine: device and precision, CPU threads, other processes' load,
CPU slots in a DVC queue, memory estimates, and where its time goes."""
