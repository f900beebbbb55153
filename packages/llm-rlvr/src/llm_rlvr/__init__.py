"""RL with verifiable rewards: advantage estimators, policy losses, verifiers, sandbox, stages."""
