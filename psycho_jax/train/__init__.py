"""Training: the loop, the tasks and their losses, checkpoints, references, online DPO.

    settings    the typed, frozen settings of a run (`TrainSettings`), built once from the config
    loop        `train_and_evaluate`: start (data, model, state) -> fit (the steps) -> finish
    step        the optimizer, the pure `train_step`, its jitted and sharded form, the eval step
    tasks       SFT, reward and DPO as three classes with the same methods (batch -> loss, metrics)
    losses      per-example losses: next-token NLL, Bradley-Terry, the DPO family (a table)
    checkpoint  Orbax checkpoints: model spec + state, checksums, atomic saves, resume
    reference   DPO's reference log-probabilities: live model or precomputed once
    online      iterative (online) DPO: sample -> score with a reward model -> DPO round

Imports `psycho_jax.data`, `psycho_jax.core` and `psycho_jax.evaluation` (online DPO scores its
samples), never the programs at the top of the package.
"""
