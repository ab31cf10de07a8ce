"""Every docstring claim that bricks behaves "as Blocks does" is backed by a test.

A claim is a docstring phrase such as "as Blocks does", "as in Blocks",
"Blocks' default(s)" or "(Blocks)" anywhere under ``bricks/``. Each one is
listed in :data:`CLAIMS` with the test that checks the behaviour it claims.
The test fails when a new claim appears without an entry (add the entry, and
the test if there is none), when an entry no longer matches any claim (the
text changed: update or remove it), or when a listed test no longer exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATTERN = re.compile(
    r"as Blocks\b|as in Blocks\b|Blocks' defaults?\b|\(Blocks\)|Blocks (?:does|did)\b", re.I
)
WINDOW = (60, 40)  # characters of context kept before and after each claim

C = "tests/compat/blocks/"
#: (file under bricks/ where the claim is, a phrase of the claim's context, the test
#: "path::function" backing it)
CLAIMS: list[tuple[str, str, str]] = [
    # algorithms
    ("algorithms/updates.py", "What a step writes, as Blocks listed it",
     C + "test_blocks_algorithms.py::test_updates_algorithm_add_updates"),
    ("algorithms/rules.py", "decay_rate=0.95, epsilon=1e-6",
     C + "test_blocks_algorithms.py::test_adadelta"),
    ("algorithms/rules.py", "running RMS of recent steps",
     C + "test_blocks_algorithms.py::test_basicrmsprop"),
    ("algorithms/rules.py", "learning_rate=0.002, epsilon=1e-6",
     C + "test_blocks_algorithms.py::test_adagrad"),
    ("algorithms/rules.py", "Adam (Kingma & Ba)", C + "test_blocks_algorithms.py::test_adam"),
    ("algorithms/rules.py", "``threshold=None`` leaves steps unchanged",
     C + "test_blocks_algorithms.py::test_step_clipping_no_threshold_regression"),
    ("algorithms/rules.py", "assumes plain (stochastic) gradient",
     C + "test_blocks_algorithms.py::test_variable_clipping"),
    ("algorithms/step_rule.py", "is subtracted* from the parameters",
     C + "test_blocks_algorithms.py::test_gradient_descent"),
    # core
    ("core/application.py", "``as_list=True`` returns the outputs",
     C + "test_blocks_bricks.py::test_as_list_and_as_dict"),
    ("core/batch_norm.py", "``batch_normalization(mlp, ...)``, as Blocks spelled it",
     C + "test_blocks_graph_bn.py::test_batch_normalization_simple"),
    ("core/batch_norm.py", "each activation is wrapped",
     C + "test_blocks_bn.py::test_batch_normalized_mlp_construction"),
    ("core/brick.py", "Its life, as in Blocks",
     "tests/core/test_lifecycle.py::test_push_order_is_parent_first"),
    ("core/brick.py", "as Blocks showed ``name=``", C + "test_blocks_bricks.py::test_repr"),
    ("core/brick.py", "``Brick.allocation_args``", C + "test_blocks_bricks.py::test_lazy"),
    ("core/convolution.py", "filter_height, filter_width)`` as in Blocks/Theano",
     C + "test_blocks_conv.py::test_convolutional"),
    ("core/convolution.py", "(``True``, the default, as in Blocks)",
     "tests/core/test_conv_tied_default.py::test_convolutional_default_is_one_bias_per_filter"),
    ("core/convolution.py", "has Blocks' layout ``(num_filters",
     "tests/core/test_conv.py::test_convolutional_transpose_is_the_adjoint_of_convolutional"),
    ("core/conv.py", "over the layers' own settings (as Blocks)",
     C + "test_blocks_conv.py::test_convolutional_sequence_tied_biases_pushed_if_explicitly_set"),
    ("core/cost.py", "``y`` is the target", "tests/core/test_numerics.py::test_squared_error"),
    ("core/cost.py", "(the output of a ``Softmax``), as in Blocks",
     "tests/core/test_stable_cost.py::test_value_and_gradient_match_log_sum_exp"),
    ("core/initialization.py", "``repr`` shows the settings as Blocks did",
     C + "test_blocks_initialization.py::test_constant"),
    ("core/initialization.py", "``width = sqrt(12) * std``",
     "tests/core/test_initialization.py::test_uniform_width_and_std"),
    ("core/initialization.py", "``sparse_init`` (zero by default)",
     C + "test_blocks_initialization.py::test_sparse"),
    ("core/maxout.py", "default leak 0.01", C + "test_blocks_bricks.py::test_activations"),
    ("core/rng.py", "Blocks' ``RNGMixin``", C + "test_blocks_bricks.py::test_rng"),
    ("core/rng.py", "two bricks get different seeds", C + "test_blocks_bricks.py::test_rng"),
    ("core/selection.py", "Blocks' ``Selector`` does", C + "test_blocks_small.py::test_selector"),
    ("core/selection.py", "``blocks.select.Path``", C + "test_blocks_small.py::test_path"),
    ("core/sequences.py", "``Linear()``), as in Blocks: layer",
     "tests/core/test_prototype_paths.py::test_layers_are_named_after_the_prototype_class"),
    ("core/sequences.py", "those given to the MLP overwrite them",
     "tests/core/test_prototype_paths.py::"
     "test_prototype_settings_are_defaults_the_mlp_overwrites"),
    ("core/sequences.py", "as Blocks' ``FeedforwardSequence``",
     C + "test_blocks_bricks.py::test_sequence_feedforward_dims"),
    ("core/simple.py", "``num_pieces`` neighbours",
     "tests/core/test_numerics.py::test_maxout_against_loops"),
    ("core/simple.py", "the L2 norms of ``W`` and ``b``",
     C + "test_blocks_graph.py::test_variable_filter"),
    # errors
    ("errors.py", "Blocks raised one for missing configuration",
     C + "test_blocks_bricks.py::test_lazy"),
    ("errors.py", "also a ``TypeError``, as Blocks raised",
     C + "test_blocks_graph.py::test_variable_filter_roles_error"),
    ("errors.py", "as Blocks raised for a state it could not find",
     C + "test_blocks_recurrent.py::test_bug_in_initial_states"),
    # extensions
    ("extensions/aggregation.py", "computed on the host from per-batch values (Blocks)",
     C + "test_blocks_monitoring.py::test_monitored_quantity_dataset_evaluators"),
    ("extensions/base.py", "also prints after every epoch, as in Blocks",
     "tests/training/test_conditions.py::test_printing_defaults_and_batch_schedule"),
    ("extensions/base.py", "(as Blocks: a list is needed)",
     C + "test_blocks_ext_extensions.py::test_add_list_condition"),
    ("extensions/base.py", "``(from_main_loop, from_user)`` (Blocks)",
     C + "test_blocks_ext_extensions.py::test_parse_args"),
    ("extensions/checkpoint.py", "after ``on_resumption`` (as Blocks",
     C + "test_blocks_ext_saveload.py::test_load_log_and_iteration_state"),
    ("extensions/monitoring.py", "log record is named (Blocks)",
     C + "test_blocks_ext_monitoring.py::test_monitoring_extension__record_name"),
    ("extensions/printing.py", "as Blocks prints them",
     C + "test_blocks_ext_monitoring.py::test_printing"),
    ("extensions/stopping.py", "the name is used as given (Blocks)",
     C + "test_blocks_ext_stopping.py::"
     "test_finish_if_no_improvement_after_epochs_log_record_specified"),
    ("extensions/stopping.py", "stop when it stops improving (Blocks)",
     C + "test_blocks_ext_stopping.py::test_epochs"),
    ("extensions/timing.py", "(Blocks' defaults: ``before_training``",
     C + "test_blocks_ext_extensions.py::test_timestamp_default_triggers"),
    ("extensions/training.py", "as Blocks' ``== N`` predicate did",
     C + "test_blocks_main_loop.py::test_training_resumption"),
    ("extensions/training.py", "read from ``function``'s signature (as Blocks)",
     C + "test_blocks_ext_training.py::test_shared_variable_modifier"),
    # graph
    ("graph/_extras.py", "Blocks' ``collect_parameters``",
     C + "test_blocks_graph.py::test_collect"),
    ("graph/_filter.py", "a ``TypeError``, as in Blocks",
     C + "test_blocks_graph.py::test_variable_filter_roles_error"),
    ("graph/_graph.py", "pairs, as Blocks took them", C + "test_blocks_graph.py::test_replace"),
    ("graph/_graph.py", "a variable that is not part of this gr",
     C + "test_blocks_graph.py::test_replace_variable_not_in_graph"),
    # main loop
    ("main_loop/main_loop.py", "Event order (as in Blocks)",
     "tests/training/test_main_loop.py::test_two_epochs_event_order"),
    ("main_loop/main_loop.py", "(an ``AttributeError``, as in Blocks)",
     C + "test_blocks_main_loop.py::test_main_loop"),
    # recurrent
    ("recurrent/_architectures.py", "both what Blocks did and the fast way",
     "tests/recurrent/test_architectures.py::test_many_steps_match_numpy"),
    ("recurrent/_architectures.py", "Long short-term memory with peepholes",
     C + "test_blocks_recurrent.py::test_lstm_many_steps"),
    ("recurrent/_architectures.py", "Gated recurrent unit (Cho et al. 2014)",
     C + "test_blocks_recurrent.py::test_gated_many_steps"),
    ("recurrent/_architectures.py", "(default ``True``, as Blocks)",
     "tests/recurrent/test_architectures.py::test_learned_initial_states_and_dims"),
    ("recurrent/_attention.py", "As in Blocks (Bahdanau et al. 2015)",
     C + "test_blocks_attention.py::test_sequence_content_attention"),
    ("recurrent/_attention.py", "At each step, as in Blocks",
     C + "test_blocks_attention.py::test_attention_recurrent"),
    ("recurrent/_attention.py", "add_contexts: as in Blocks",
     C + "test_blocks_sequence_generators.py::test_with_attention"),
    ("recurrent/_attention.py", "transposed to ``(batch, attended_time)``",
     "tests/recurrent/test_attention.py::test_glimpses_match_numpy"),
    ("recurrent/_attention.py", "As in Blocks, every argument (``attended``",
     "tests/recurrent/test_attention_contexts.py::"
     "test_attention_recurrent_initial_states_see_the_attended_sequence"),
    ("recurrent/_beam_search.py", "as Blocks' search does",
     "tests/recurrent/test_beam_search.py::test_the_loop_stops_when_every_beam_is_finished"),
    ("recurrent/_beam_search.py", "Blocks' default result",
     C + "test_blocks_search.py::test_beam_search"),
    ("recurrent/_beam_search.py", "ignore_first_eol: as in Blocks",
     C + "test_blocks_search.py::test_ignore_first_eol"),
    ("recurrent/_sequence_generator.py", "score and generate sequences, as in Blocks",
     C + "test_blocks_sequence_generators.py::test_sequence_generator"),
    ("recurrent/_sequence_generator.py", "the mean cost per sequence element",
     C + "test_blocks_sequence_generators.py::test_sequence_generator"),
    ("recurrent/_stack.py", "layers of recurrent bricks, as in Blocks",
     C + "test_blocks_recurrent.py::test_stack_many_steps"),
]


def find_claims() -> list[tuple[str, str]]:
    """``(file, context)`` of every claim in a docstring under ``bricks/``."""
    found = []
    for path in sorted((ROOT / "bricks").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(
                node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
            ):
                continue
            doc = ast.get_docstring(node, clean=False)
            if not doc:
                continue
            text = " ".join(doc.split())
            for match in PATTERN.finditer(text):
                start, end = max(0, match.start() - WINDOW[0]), match.end() + WINDOW[1]
                found.append((str(path.relative_to(ROOT / "bricks")), text[start:end]))
    return found


def _matches(entry: tuple[str, str, str], claim: tuple[str, str]) -> bool:
    # by phrase: a claim whose docstring moves to another module keeps its entry (the file
    # column says where to look; the phrases are specific enough not to match elsewhere)
    return " ".join(entry[1].split()) in claim[1]


def test_every_claim_has_a_backing_test():
    unlisted = [c for c in find_claims() if not any(_matches(e, c) for e in CLAIMS)]
    assert not unlisted, (
        "docstring claims of Blocks behaviour without an entry in tests/test_blocks_claims.py "
        "CLAIMS (file, a phrase of the claim, the test that backs it):\n"
        + "\n".join(f"  bricks/{f}: ...{text}..." for f, text in unlisted)
    )


def test_every_entry_matches_a_claim():
    claims = find_claims()
    stale = [e for e in CLAIMS if not any(_matches(e, c) for c in claims)]
    assert not stale, f"entries whose claim is no longer in the docstrings: {stale}"


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test")
    }


def test_every_backing_test_exists():
    missing = []
    for _, _, test in CLAIMS:
        file, _, name = test.partition("::")
        path = ROOT / file
        if not path.is_file() or name not in _test_functions(path):
            missing.append(test)
    assert not missing, f"backing tests that do not exist: {sorted(set(missing))}"


def test_the_pattern_finds_the_forms_of_a_claim():
    forms = ["as Blocks does", "as in Blocks", "Blocks' default", "Blocks' defaults", "(Blocks)"]
    assert all(PATTERN.search(f"x {form} y") for form in forms)
    assert not PATTERN.search("Blocks' Theano graph")
