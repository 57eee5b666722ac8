"""Every rule of the release state machine, one test each."""

import pytest

from release.state import (
    NeedsReload,
    ReleaseError,
    add_candidate,
    label_candidate,
    make_state,
    prepare_reload,
    promote,
    retire,
    set_traffic,
    unload_rejected,
)
from release.state import rollback as flip


def rollback(state, available):
    """Roll back and unload, as operations.rollback does in two generations."""
    flipped = flip(state, available)
    bad = set(flipped.rejected) - set(state.rejected)
    assert set(flipped.versions) >= bad - {state.candidate}  # labels move first, the version is still listed
    return unload_rejected(flipped)


def released(stable: int, model: str = "m"):
    """A model whose first version went stable."""
    state = add_candidate(make_state(model), stable)
    return label_candidate(state, stable, available={stable})


def on_canary(stable: int = 42, canary: int = 43):
    state = add_candidate(released(stable), canary)
    return label_candidate(state, canary, available={stable, canary})


def test_first_version_becomes_stable_directly_after_it_is_available():
    phase1 = add_candidate(make_state("m"), 42)
    assert phase1.versions == (42,) and phase1.label_map == {}
    phase2 = label_candidate(phase1, 42, available={42})
    assert phase2.stable == 42 and phase2.canary == 42 and phase2.in_flight is None


def test_phase1_lists_the_new_version_with_labels_unchanged():
    before = released(42)
    after = add_candidate(before, 43)
    assert after.versions == (42, 43)
    assert after.labels == before.labels
    assert after.candidate == 43


def test_phase2_moves_canary_to_the_available_version():
    state = on_canary()
    assert state.label_map == {"stable": 42, "canary": 43}
    assert state.in_flight == 43 and state.candidate is None


def test_label_on_unavailable_version_is_refused():
    state = add_candidate(released(42), 43)
    with pytest.raises(ReleaseError, match="version 43 is not confirmed AVAILABLE"):
        label_candidate(state, 43, available={42})
    with pytest.raises(ReleaseError, match="not confirmed AVAILABLE"):
        label_candidate(add_candidate(make_state("m"), 7), 7, available=set())


def test_label_on_unlisted_version_is_refused():
    with pytest.raises(ReleaseError, match="not listed"):
        label_candidate(released(42), 44, available={42, 44})


def test_rerun_with_nothing_new_changes_nothing():
    state = on_canary()
    assert add_candidate(state, 43) is state
    assert label_candidate(state, 43, available={42, 43}) is state
    stable = released(42)
    assert add_candidate(stable, 42) is stable


def test_a_second_release_waits_for_a_canary_on_trial():
    with pytest.raises(ReleaseError, match="version 43 is still being released"):
        add_candidate(on_canary(), 44)


def test_a_newer_push_replaces_a_version_still_waiting_for_phase2():
    """No server reachable from the pipeline: 43 was listed, never labelled, and 44 arrives."""
    waiting = add_candidate(released(42), 43)
    assert waiting.candidate == 43
    replaced = add_candidate(waiting, 44)
    assert replaced.versions == (42, 44)
    assert replaced.candidate == 44
    assert replaced.label_map == waiting.label_map  # stable untouched, no label on 44 yet
    assert add_candidate(replaced, 43) == replaced  # an older push never replaces a newer one


def test_a_newer_first_version_replaces_an_unlabelled_first_version():
    first = add_candidate(make_state("taxi"), 100)
    assert add_candidate(first, 200).versions == (200,)


def test_older_than_stable_is_refused():
    with pytest.raises(ReleaseError, match="older than stable"):
        add_candidate(released(42), 41)


def test_promote_moves_stable_and_retains_the_old_version():
    state = promote(on_canary(), available={42, 43}, now=100.0, retain_seconds=60)
    assert state.label_map == {"stable": 43, "canary": 43, "previous": 42}
    assert state.versions == (42, 43)
    assert state.retain_until == 160.0 and state.rollback_to == 42


def test_promote_needs_both_versions_available_and_a_canary():
    with pytest.raises(ReleaseError, match="version 43 is not confirmed"):
        promote(on_canary(), available={42}, now=0, retain_seconds=1)
    with pytest.raises(ReleaseError, match="no canary"):
        promote(released(42), available={42}, now=0, retain_seconds=1)


def test_retire_waits_for_the_rollback_window():
    promoted = promote(on_canary(), available={42, 43}, now=100.0, retain_seconds=60)
    assert retire(promoted, now=159.0) is promoted
    retired = retire(promoted, now=160.0)
    assert retired.versions == (43,)
    assert retired.label_map == {"stable": 43, "canary": 43}
    assert retired.rollback_to == 42


def test_rollback_of_a_canary_flips_the_label_and_unloads_it():
    state = rollback(on_canary(), available={42, 43})
    assert state.label_map == {"stable": 42, "canary": 42}
    assert state.versions == (42,)
    assert state.rejected == (43,)
    assert flip(on_canary(), available={42, 43}).versions == (42, 43)  # unloads only after the label flip
    # the rejected version is never released again by a re-run
    assert add_candidate(state, 43) is state


def test_rollback_of_a_waiting_candidate_unlists_it():
    state = rollback(add_candidate(released(42), 43), available={42})
    assert state.versions == (42,) and state.label_map == {"stable": 42, "canary": 42}


def test_rollback_after_promotion_is_a_label_flip_while_retained():
    promoted = promote(on_canary(), available={42, 43}, now=0, retain_seconds=60)
    state = rollback(promoted, available={42, 43})
    assert state.label_map == {"stable": 42, "canary": 42}
    assert state.versions == (42,) and state.rejected == (43,)


def test_rollback_after_retirement_reloads_first():
    retired = retire(promote(on_canary(), available={42, 43}, now=0, retain_seconds=1), now=2)
    with pytest.raises(NeedsReload) as raised:
        rollback(retired, available={43})
    assert raised.value.version == 42
    reloading = prepare_reload(retired)
    assert reloading.versions == (42, 43) and reloading.label_map == retired.label_map
    with pytest.raises(ReleaseError, match="version 42 is not confirmed AVAILABLE"):
        rollback(reloading, available={43})
    state = rollback(reloading, available={42, 43})
    assert state.label_map == {"stable": 42, "canary": 42} and state.versions == (42,)


def test_nothing_to_roll_back():
    with pytest.raises(ReleaseError, match="nothing to roll back"):
        rollback(released(42), available={42})


def test_an_older_previous_retires_early_on_the_next_promotion():
    first = promote(on_canary(42, 43), available={42, 43}, now=0, retain_seconds=1000)
    second = label_candidate(add_candidate(first, 44), 44, available={42, 43, 44})
    assert second.versions == (42, 43, 44)
    state = promote(second, available={42, 43, 44}, now=1, retain_seconds=1000)
    assert state.versions == (43, 44) and state.previous == 43


def test_traffic_only_goes_to_a_canary_on_trial():
    state = set_traffic(on_canary(), 0.25, step="25%")
    assert state.canary_weight == 0.25 and state.step == "25%"
    with pytest.raises(ReleaseError, match="no canary on trial"):
        set_traffic(released(42), 0.1)
    with pytest.raises(ReleaseError, match="within"):
        set_traffic(on_canary(), 1.5)
    assert rollback(state, available={42, 43}).canary_weight == 0.0


def test_states_are_immutable():
    state = released(42)
    with pytest.raises(AttributeError):
        state.versions = (1,)
