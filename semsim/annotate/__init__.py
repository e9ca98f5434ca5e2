"""People in the loop: the annotation page and the answers it collects.

A person judges one reconstruction at a time, as the SemSim study's annotators did: in `class`
mode they pick its category among the candidates the machine oracle is offered
(`semsim.oracle.candidate_classes`) or say "unrecognisable"; in `pair` mode (identity datasets,
fine-grained classes) they see the original beside the reconstruction and answer "same",
"different" or "can't tell". `items` describes what is shown, `store` keeps every answer in a
SQLite database beside the images it judges, `session` decides who sees what next, `server`
is the web page, `agreement` measures how far judges agree and `report` turns answers into
SemSim's annotation records and agreement figures.

This package knows nothing of a run directory's layout: the command line
(`pipeline.commands.annotate`) builds the items of a run and hands them in.
"""
