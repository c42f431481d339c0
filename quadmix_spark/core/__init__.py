"""The numpy core of QuaDMix: the specification the Spark path must reproduce.

σ (:mod:`.normalize`) → Eq.1 merge (:mod:`.merging`) → Eq.2 token-weighted rank
(:mod:`.ranking`) → Eq.3 expected copies and deterministic draws (:mod:`.sampling`);
θ (:mod:`.params`) and Algorithm 1 (:mod:`.param_sampler`); domain mixtures (:mod:`.mixture`)
and the budget calibration every selection uses (:mod:`.calibration`). Pure numpy, vectorised,
independent of batch boundaries and row order. Convention: smaller = better.
"""

from .calibration import UNBOUNDED, ScaleFit, calibrate_scales, margin_fill, scale_bracket
from .identity import content_key
from .merging import merge_scores
from .mixture import SUM_TOLERANCE, Mixture, MixtureError, domain_targets
from .normalize import build_reference, orient, percentile_against, percentile_matrix
from .param_sampler import ParamSampler
from .params import (
    BETA_KEYS,
    ParamsError,
    QuadMixParams,
    check_against,
    load_params,
    param_names,
    params_hash,
    save_params,
    uniform,
)
from .ranking import RankMapping, apply_rank_mapping, fit_rank_mapping, token_weighted_rank
from .sampling import (
    CV_FOLD_STREAM,
    ENTROPY_STREAM,
    HOLDOUT_STREAM,
    ORDER_STREAM,
    RUN_HOLDOUT_STREAM,
    SAMPLE_STREAM,
    STATS_DOMAIN_STREAM,
    STATS_GLOBAL_STREAM,
    STREAMS_STREAM,
    domain_token_expectation,
    expected_copies_to_copies,
    hash_uniform,
    sampling_function,
    text_keys,
)
from .streams import domain_stream, mixture_stream, split_tokens, stream_order
from .theta_set import ThetaSet

__all__ = [
    "BETA_KEYS",
    "ENTROPY_STREAM",
    "HOLDOUT_STREAM",
    "SUM_TOLERANCE",
    "UNBOUNDED",
    "Mixture",
    "MixtureError",
    "ORDER_STREAM",
    "RUN_HOLDOUT_STREAM",
    "CV_FOLD_STREAM",
    "ScaleFit",
    "SAMPLE_STREAM",
    "STATS_DOMAIN_STREAM",
    "STATS_GLOBAL_STREAM",
    "STREAMS_STREAM",
    "ParamSampler",
    "ParamsError",
    "QuadMixParams",
    "RankMapping",
    "ThetaSet",
    "apply_rank_mapping",
    "build_reference",
    "calibrate_scales",
    "check_against",
    "content_key",
    "domain_stream",
    "domain_targets",
    "domain_token_expectation",
    "expected_copies_to_copies",
    "fit_rank_mapping",
    "hash_uniform",
    "load_params",
    "margin_fill",
    "merge_scores",
    "mixture_stream",
    "orient",
    "param_names",
    "params_hash",
    "percentile_against",
    "percentile_matrix",
    "sampling_function",
    "save_params",
    "scale_bracket",
    "split_tokens",
    "stream_order",
    "text_keys",
    "token_weighted_rank",
    "uniform",
]
