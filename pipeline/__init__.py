"""The command line and the orchestration of the stages (federate, attack, score, present): `flaudit run`, sweeps, the metric study."""
