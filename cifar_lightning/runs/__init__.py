"""Runs and the command line: run folders and what identifies a run, checkpoints, the callbacks that write a
run's files, and the LightningCLI. Uses the training core."""
