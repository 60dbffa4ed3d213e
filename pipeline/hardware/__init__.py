"""How a stage uses the machine: device and precision, CPU threads, memory estimates, and
where its time goes."""
