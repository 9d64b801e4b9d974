"""A feed's memory of its last entries answers a resume exactly (the entries after the id, none twice), and says
it cannot (None: Redis is asked) for an id it never had or no longer keeps, or across a rebuild's snapshot."""

from hypothesis import given
from hypothesis import strategies as st

from api.feed import RecentEntries
from api.readmodel import FeedEntry


def entry(n: int, kind: str = "item") -> FeedEntry:
    return FeedEntry(f"{n}-0", kind, f'{{"n":{n}}}')


def test_a_resume_from_an_id_it_handed_out_gets_exactly_what_came_after() -> None:
    recent = RecentEntries(limit=10, start_id="1-0")
    for n in range(2, 7):
        recent.add(entry(n))

    assert recent.after("1-0") == [entry(n) for n in range(2, 7)]  # from where the feed started
    assert recent.after("4-0") == [entry(5), entry(6)]
    assert recent.after("6-0") == []  # up to date
    assert recent.after("3-5") is None  # never an id of this feed
    assert recent.after("0-0") is None  # before it started


def test_entries_read_again_are_kept_once() -> None:
    recent = RecentEntries(limit=10, start_id="1-0")
    for n in (2, 3, 2, 3, 4):
        recent.add(entry(n))

    assert recent.after("1-0") == [entry(2), entry(3), entry(4)]


def test_a_rebuild_in_between_sends_the_client_to_a_snapshot() -> None:
    recent = RecentEntries(limit=10, start_id="1-0")
    for e in (entry(2), entry(3, "snapshot"), entry(4)):
        recent.add(e)

    assert recent.after("2-0") is None
    assert recent.after("3-0") == [entry(4)]


@given(st.integers(min_value=1, max_value=30), st.integers(min_value=1, max_value=60), st.data())
def test_past_its_limit_it_forgets_the_oldest_and_answers_only_for_what_it_kept(
    limit: int, count: int, data: st.DataObject
) -> None:
    recent = RecentEntries(limit=limit, start_id="0-0")
    for n in range(1, count + 1):
        recent.add(entry(n))
    asked = data.draw(st.integers(min_value=0, max_value=count))

    history = recent.after(f"{asked}-0")

    oldest_answerable = max(0, count - limit)  # the id right before the first entry kept
    if asked < oldest_answerable:
        assert history is None
    else:
        assert history == [entry(n) for n in range(asked + 1, count + 1)]
