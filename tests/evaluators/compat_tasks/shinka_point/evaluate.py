"""ShinkaEvolve evaluator: ``evaluate.py --program_path P --results_dir D``.

Writes ``metrics.json`` (combined_score, public, private, text_feedback) and
``correct.json`` (correct, error) into the results dir.
"""

import argparse
import importlib.util
import json
import os

TARGET = 4.0
SECRET_HOLDOUT = 4.25


def main(program_path, results_dir):
    spec = importlib.util.spec_from_file_location("program", program_path)
    module = importlib.util.module_from_spec(spec)
    error = None
    try:
        spec.loader.exec_module(module)
        guess = float(module.run_experiment(seed=1))
        correct = guess >= 0
        if not correct:
            error = f"guess {guess} is negative"
    except Exception as exc:  # a broken candidate is reported, as ShinkaEvolve does
        guess, correct, error = 0.0, False, str(exc)
    metrics = {
        "combined_score": 1.0 / (1.0 + abs(guess - TARGET)),
        "public": {"guess": guess},
        "private": {"holdout_error": abs(guess - SECRET_HOLDOUT)},
        "text_feedback": f"the guess {guess} is {'below' if guess < TARGET else 'above'} target",
        "execution_time_mean": 0.001,
    }
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, "correct.json"), "w") as f:
        json.dump({"correct": correct, "error": error}, f)
    with open(os.path.join(results_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--program_path", default="initial.py")
    parser.add_argument("--results_dir", default="results")
    args = parser.parse_args()
    main(args.program_path, args.results_dir)
