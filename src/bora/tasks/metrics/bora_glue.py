"""GLUE dev-set metrics as an `evaluate` module that loads offline by path (the hub's "glue" script cannot load here).

The same numbers as the hub's glue metric: accuracy; F1 of the positive class (MRPC, QQP); Matthews correlation
(CoLA); Pearson and Spearman correlation (STS-B). ``config_name`` is the hub config, e.g. ``mrpc``.
Each import is on its own line: evaluate reads them to check the dependencies.
"""

import datasets
import evaluate
import scipy.stats
import sklearn.metrics

_DESCRIPTION = "GLUE metrics of one task (config_name = the task's hub config) on predictions and references."
_INPUTS = """
predictions: predicted class ids (regression for stsb: predicted scores)
references: gold class ids (stsb: gold scores)
"""
_CITATION = """@inproceedings{wang2019glue, title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural
Language Understanding}, author={Wang, Alex and others}, booktitle={ICLR}, year={2019}}"""

CONFIGS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli")


class BoraGlue(evaluate.Metric):
    def _info(self):
        if self.config_name not in CONFIGS:
            raise KeyError(f"config_name={self.config_name!r}: use one of {', '.join(CONFIGS)}")
        dtype = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}),
        )

    def _compute(self, predictions, references):
        if self.config_name == "cola":
            return {"matthews_correlation": float(sklearn.metrics.matthews_corrcoef(references, predictions))}
        if self.config_name == "stsb":
            return {
                "pearson": float(scipy.stats.pearsonr(predictions, references)[0]),
                "spearmanr": float(scipy.stats.spearmanr(predictions, references)[0]),
            }
        scores = {"accuracy": float(sklearn.metrics.accuracy_score(references, predictions))}
        if self.config_name in ("mrpc", "qqp"):
            scores["f1"] = float(sklearn.metrics.f1_score(references, predictions))
        return scores
