from loadgen.analysis import held_load
from loadgen.analysis.load import held_rate
from loadgen.records import RequestRecord

T0 = 10**12  # monotonic times; 0 means "never sent"


def _record(sent_ns: int, end_ns: int) -> RequestRecord:
    return RequestRecord(0, "c", 0, 1, 1, scheduled_ns=T0 + sent_ns, sent_ns=T0 + sent_ns, end_ns=T0 + end_ns)


def test_time_weighted_mean_between_first_and_last_send():
    # in flight: 2 on [0,1000), 1 on [1000,2000), 2 on [2000,3000), 1 on [3000,4000); last send at 4000
    records = [_record(0, 1_000), _record(0, 3_000), _record(2_000, 9_000), _record(4_000, 9_000)]
    load = held_load(records, target=2)
    # area to the last send: 2*1000 + 1*1000 + 2*1000 + 1*1000 = 6000 over 4000 ns; the drain after it is left out
    assert load["mean_in_flight"] == 1.5 and load["achieved_ratio"] == 0.75 and not load["held"]


def test_lowest_window_finds_a_dip():
    ms = 1_000_000
    # two slots busy for 1 s, except slot 2 idle between 400 and 600 ms
    records = [_record(0, 1000 * ms), _record(0, 400 * ms), _record(600 * ms, 1000 * ms), _record(1000 * ms, 1100 * ms)]
    load = held_load(records, target=2)
    assert abs(load["mean_in_flight"] - 1.8) < 1e-9
    assert abs(load["min_in_flight"] - 1.0) < 1e-9  # the windows [400, 500) and [500, 600) ms hold one
    assert not load["held"]


def test_records_never_sent_do_not_count_and_full_load_is_held():
    records = [_record(0, 10), _record(0, 10), _record(10, 20), _record(10, 20),
               RequestRecord(9, "c", 0, 1, 1, scheduled_ns=T0 + 5)]  # failed to connect: never sent
    load = held_load(records, target=2)
    assert load["mean_in_flight"] == 2.0 and load["held"] and load["min_in_flight"] is None  # span < one window


def test_follow_up_turns_after_the_last_new_conversation_are_drain():
    ms = 1_000_000
    records = [_record(0, 500 * ms), _record(0, 500 * ms), _record(500 * ms, 1000 * ms),  # last new conversation
               _record(500 * ms, 600 * ms)]
    follow_up = _record(600 * ms, 900 * ms)
    follow_up.turn = 1  # its slot has nothing new to start: the run is draining
    load = held_load([*records, follow_up], target=2)
    assert load["mean_in_flight"] == 2.0 and load["held"]


def test_a_rate_not_held_is_a_plain_false():
    # two requests scheduled 10 ms apart, the second sent 5 ms late: the achieved rate falls short
    records = [RequestRecord(0, "c", 0, 1, 1, scheduled_ns=T0, sent_ns=T0),
               RequestRecord(1, "c", 0, 1, 1, scheduled_ns=T0 + 10_000_000, sent_ns=T0 + 15_000_000)]
    held = held_rate(records, 100.0)
    assert held["achieved_ratio"] < 0.98 and held["held"] is False
