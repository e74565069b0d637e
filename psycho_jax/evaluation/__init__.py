"""Counseling evaluation: scoring replies, judging, win rates, safety, reports.

    settings  the typed settings of an evaluation run (`EvalSettings`)
    safety    crisis detection and the safety rubric of a reply
    scoring   a reward model's scores of replies (and of their principles)
    judge     LLM-judge prompts and parsing on the seven principles
    winrate   pairwise win rates with confidence intervals
    replies   reading replies to evaluate; coverage of the prompts
    report    the evaluation report (markdown / html / json)
    systems   an evaluation's stages up to the replies: systems, prompt sets (crisis slice), replies
    results   the stages after: scores, win rates, safety slice, judge, evaluation.json, report
    systems   an evaluation's first stages: systems, prompt sets, their replies
    results   its later stages: scores, win rates, safety slice, judge, evaluation.json

Imports `psycho_jax.data` and `psycho_jax.core`, never training or the programs.
"""
