"""The engine behind ``tools/run_net.py``: fine-tuning and the multi-view test.

- ``distributed``: one process or many under torchrun or srun, one code path (DDP, gloo / NCCL).
- ``data``: one sample layout for videos and images, randomness from (seed, epoch, index),
  training and sharded test loaders.
- ``schedule``: the learning rate as a pure function of the epoch.
- ``train``: one training epoch.
- ``evaluate``: the multi-view test (and clip-level validation) and its result files.
- ``scores``: the test's scores file, per-class accuracy and confusion matrix.
- ``checkpoints``: training checkpoints and exact resumption.
- ``run_config``: a run's config against a checkpoint's (resuming, testing).
- ``logs``: console, ``log.jsonl`` and TensorBoard.
- ``preemption``: SIGTERM / SIGUSR1 end training after the iteration, on every process.
- ``lock``: one live run per OUTPUT_DIR.

Only ``tools/run_net.py`` and ``ats_video.build`` read the config; these modules take plain
arguments.
"""
