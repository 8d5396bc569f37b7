"""Slack text helpers: escaping of untrusted text, durations, packing lines under the block limit."""

import pytest

from appliance.slack.mrkdwn import date, duration, escape, pack_lines


def test_escape_neutralises_mentions_and_links_and_cuts_before_escaping():
    assert escape("<!here> & <@U1>") == "&lt;!here&gt; &amp; &lt;@U1&gt;"
    assert escape("<" * 10, 4) == "&lt;&lt;&lt;…"


@pytest.mark.parametrize("seconds, text", [(0.85, "850 ms"), (4.21, "4.2 s"), (187, "3 min 07 s"),
                                           (7380, "2 h 03 min"), (273_600, "3 d 04 h"), (-2, "-2.0 s")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_date_token_falls_back_to_the_escaped_text():
    assert date("2026-11-28T10:00:00Z") == "<!date^1795860000^{date_short_pretty} {time_secs}|2026-11-28T10:00:00Z>"
    assert date("<not a time>") == "&lt;not a time&gt;"


def test_pack_lines_keeps_every_line_whole_and_each_text_within_the_limit():
    lines = [str(n) * 700 for n in range(10)]
    texts = pack_lines(lines, limit=3000)
    assert all(len(text) <= 3000 for text in texts) and "\n".join(texts).split("\n") == lines
    assert len(texts) == 3 and pack_lines([]) == []
