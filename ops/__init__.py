"""Operations: the `feastflow` command — the local stack's processes, topics and seed, guarded rollouts and
rollbacks, the pricing canary, the rehearsal, release history. The top layer: may import everything below."""
