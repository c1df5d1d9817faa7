import pytest

from nbflows.errors import Conflict
from nbflows.protocol import TERMINAL, StateType, check_transition

S = StateType


@pytest.mark.parametrize(
    ("current", "proposed"),
    [
        (S.SCHEDULED, S.PENDING),
        (S.SCHEDULED, S.RUNNING),
        (S.SCHEDULED, S.CANCELLED),
        (S.PENDING, S.RUNNING),
        (S.PENDING, S.SCHEDULED),
        (S.RUNNING, S.COMPLETED),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.CRASHED),
        (S.RUNNING, S.CANCELLING),
        (S.RUNNING, S.PAUSED),
        (S.PAUSED, S.RUNNING),
        (S.CANCELLING, S.CANCELLED),
    ],
)
def test_legal_transitions(current: StateType, proposed: StateType) -> None:
    assert check_transition(current, proposed) == proposed.value.capitalize()


@pytest.mark.parametrize(
    ("current", "proposed"),
    [
        (S.SCHEDULED, S.COMPLETED),
        (S.PENDING, S.COMPLETED),
        (S.RUNNING, S.SCHEDULED),
        (S.RUNNING, S.PENDING),
        (S.CANCELLING, S.RUNNING),
        (S.CANCELLING, S.COMPLETED),
    ],
)
def test_illegal_transitions_name_the_allowed_ones(current: StateType, proposed: StateType) -> None:
    with pytest.raises(Conflict, match=f"a {current.value} run cannot become {proposed.value}"):
        check_transition(current, proposed)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
@pytest.mark.parametrize("proposed", list(StateType))
def test_terminal_runs_never_change(terminal: StateType, proposed: StateType) -> None:
    with pytest.raises(Conflict, match="terminal"):
        check_transition(terminal, proposed)


def test_retry_is_the_only_way_out_of_failed() -> None:
    assert check_transition(S.FAILED, S.SCHEDULED, retry=True) == "AwaitingRetry"
    assert check_transition(S.CRASHED, S.SCHEDULED, retry=True) == "AwaitingRetry"
    with pytest.raises(Conflict, match="only a FAILED or CRASHED run can be retried"):
        check_transition(S.COMPLETED, S.SCHEDULED, retry=True)


def test_state_names() -> None:
    assert check_transition(S.SCHEDULED, S.SCHEDULED, name="Late") == "Late"
    with pytest.raises(Conflict, match="valid: Scheduled, Late, AwaitingRetry"):
        check_transition(S.SCHEDULED, S.SCHEDULED, name="Later")
