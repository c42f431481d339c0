"""The registries (core/registry.py) and the runs-table machinery's pure parts (spark/runs_table.py):
registration, the runs tables' declared columns (unchanged from the tables already written), which
runs a call trains, and which classes travel to the workers by value."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pyspark import cloudpickle
from pyspark.sql import types as T

from quadmix_spark.config import ConfigError, load_config
from quadmix_spark.core.registry import Registry
from quadmix_spark.mixing.reweighters import BUILT_IN, REWEIGHTERS
from quadmix_spark.mixing.reweighting import Uniform
from quadmix_spark.pipeline import reweight_runs
from quadmix_spark.proxy import runs as proxy_runs
from quadmix_spark.proxy.trainers import TRAINERS
from quadmix_spark.spark.runs_table import COMMON, RunsTable, plan, ship

# The tables as written before the shared machinery: a table of either kind keeps loading.
PROXY_RUNS = (
    "struct<run_id:string,kind:string,trainer:string,status:string,error:string,theta:array<double>,"
    "mixture:array<double>,n_train_tokens:bigint,n_docs:bigint,"
    "losses:array<struct<eval_set:string,step_tokens:bigint,loss:double>>,attempt:int,seconds:double,"
    "written_at:timestamp,vocab_key:string>"
)
REWEIGHT_RUNS = (
    "struct<run_id:string,kind:string,method:string,seed:int,params:string,streams_key:string,"
    "status:string,error:string,domains:array<string>,alpha:array<array<double>>,"
    "delta:array<array<double>>,train_loss:array<double>,mixture:array<double>,final:string,"
    "epochs:map<string,double>,vocab_key:string,n_train_tokens:bigint,eval_losses:map<string,double>,"
    "target_loss:double,history:string,attempt:int,seconds:double,written_at:timestamp>"
)


def test_the_runs_tables_keep_their_columns():
    assert proxy_runs.TABLE.simpleString() == PROXY_RUNS
    # Columns added since are appended (a table written before gains them as nulls).
    assert reweight_runs.TABLE.simpleString() == REWEIGHT_RUNS[:-1] + ",round_alphas:array<array<double>>>"
    assert proxy_runs.RESULT.fieldNames() == [
        "run_id", "status", "error", "n_train_tokens", "n_docs", "losses", "attempt", "seconds"
    ]  # fmt: skip
    table = reweight_runs.TABLE.fieldNames()
    assert reweight_runs.RESULT.fieldNames() == [c for c in table if c != "written_at"]
    for table in (proxy_runs.TABLE, reweight_runs.TABLE):
        assert all(table[name] == f for name, f in COMMON.items())


def test_a_runs_table_needs_every_common_column_once():
    own = T.StructField("loss", T.DoubleType())
    with pytest.raises(ValueError, match=r"common columns \['written_at'\] missing"):
        RunsTable.declare("t", "run_id", "kind", "status", "error", "attempt", "seconds", own)
    with pytest.raises(ValueError, match="a column twice"):
        RunsTable.declare("t", *COMMON, own, own)
    table = RunsTable.declare("t", *COMMON, own, added=("loss",))
    assert table.schema.fieldNames()[-1] == "loss" and table.added == ("loss",)
    assert table.result(["run_id", "loss"]).fieldNames() == ["run_id", "loss"]


@dataclass(frozen=True)
class Spec:
    run_id: str


def test_plan_trains_what_is_missing_and_failed_runs_only_when_asked():
    specs = [Spec("new"), Spec("ok"), Spec("bad")]
    known = {"ok": ("ok", None), "bad": ("failed", "ValueError: x"), "other": ("failed", "y")}
    once = plan(specs, known, retry_failed=False)
    assert [s.run_id for s in once.todo] == ["new"] and once.ok == ["ok"]
    assert once.failed_before == {"bad": "ValueError: x"}  # reported, not retried
    again = plan(specs, known, retry_failed=True)
    assert [s.run_id for s in again.todo] == ["new", "bad"] and again.failed_before == {}
    assert plan(specs, {}, retry_failed=False).todo == specs


def test_a_registry_finds_classes_by_name_and_imports_lazy_entries_on_use():
    registry = Registry("widget")
    registry.register("uniform", "quadmix_spark.mixing.reweighting:Uniform")

    @registry.register("local")
    class Local:
        pass

    assert registry.names() == ("uniform", "local") == tuple(registry) and "local" in registry
    assert registry.get("uniform") is Uniform and registry.get("local") is Local
    registry.register("local", Local)  # the same class again: a no-op (a module imported twice)
    with pytest.raises(ValueError, match=r"widget 'local' is registered already \(.*Local\)"):
        registry.register("local", Uniform)
    with pytest.raises(ValueError, match=r"kinds\[0\]: unknown widget 'nope' \(uniform, local\)"):
        registry.get("nope", "kinds[0]")
    with pytest.raises(ValueError, match="'module:Class'"):
        registry.register("bad", "quadmix_spark.mixing.reweighting.Uniform")


def test_config_validation_asks_the_registries(tmp_path):
    empty = tmp_path / "c.yaml"
    empty.write_text("{}")
    assert BUILT_IN == ("tandem", "doremi", "uniform") and set(BUILT_IN) <= set(REWEIGHTERS)
    assert load_config(empty).reweight.methods == list(BUILT_IN)
    with pytest.raises(ConfigError, match=r"reweight.methods: \['nope'\] not among tandem, doremi, uniform"):
        load_config(empty, ["reweight.methods=[nope]"])
    with pytest.raises(ConfigError, match=r"reweight.params.nope: not a method"):
        load_config(empty, ["reweight.params={nope: [{}]}"])
    with pytest.raises(ConfigError, match=r"proxy.trainer: unknown trainer 'gpt' \(ngram, tinylm"):
        load_config(empty, ["proxy.trainer=gpt"])
    assert load_config(empty, ["proxy.trainer=tinylm"]).proxy.trainer == "tinylm"
    assert {"ngram", "tinylm"} <= set(TRAINERS)


def test_only_classes_no_worker_can_import_travel_by_value():
    class Here:  # defined in this test module: the workers have no tests/ on their path
        pass

    ship(Uniform, dict)
    assert not {"quadmix_spark.mixing.reweighting", "builtins"} & cloudpickle.list_registry_pickle_by_value()
    ship(Here)
    assert __name__ in cloudpickle.list_registry_pickle_by_value()
