"""pytest options shared by the benches: ``sim`` parametrizes over both simulators."""
import pytest

from verif.simulate import SIMULATORS


@pytest.fixture(params=SIMULATORS)
def sim(request):
    """Each bench runs on Icarus and on Verilator; a missing one fails the bench."""
    return request.param
