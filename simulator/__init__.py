"""OneStop Exchange capacity model: a SimPy simulation of the city's centres and gateway.

Public entry points: `simulator.scenario.load`, `simulator.runner.simulate`,
`simulator.theory` (Erlang C) and the `python -m simulator` command line.
"""
