"""Host allocation labels from EC2 instance tags (`ec2_tags`), read from a local HTTP server that speaks IMDSv2
as EC2 does: a PUT for a token, the token header on every GET (401 without it), 404 for a tag the instance does
not have and for every tag path when tags are not allowed in metadata. moto's instance-metadata server has no
tags and does not check tokens, so it cannot stand in here."""

from __future__ import annotations

import http.server
import threading

import pytest

import helpers

TOKEN = "AQAEAFake-imdsv2-token=="


class Imds(http.server.BaseHTTPRequestHandler):
    tags: dict[str, str] | None = {}  # None: the instance does not allow tags in metadata
    seen: list[tuple[str, str, str | None]] = []

    def log_message(self, *_):
        pass

    def _send(self, code: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        self.seen.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._send(400)
        self._send(200, TOKEN)

    def do_GET(self):
        self.seen.append(("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            return self._send(401)
        prefix = "/latest/meta-data/tags/instance"
        if self.tags is None or not self.path.startswith(prefix):
            return self._send(404)
        key = self.path[len(prefix):].lstrip("/")
        if not key:
            return self._send(200, "\n".join(sorted(self.tags)))
        if key not in self.tags:
            return self._send(404)
        self._send(200, self.tags[key])


@pytest.fixture
def imds():
    Imds.tags, Imds.seen = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Imds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def cost_series(*args: str) -> list:
    proc, base = helpers.start_exporter("host-exporter", "--hourly-cost-dollars", "1.5", "--instance-type",
                                        "g5.xlarge", *args)
    try:
        text = helpers.scrape(base)
    finally:
        proc.stop()
    return helpers.samples(text)["mlscope_host_hourly_cost_dollars"]


def test_tags_become_labels_and_config_labels_win(imds):
    _, url = imds
    Imds.tags = {"team": "ml-platform", "cost-center": "cc-7", "Name": "gpu-box-1"}
    series = cost_series("--ec2-tags", "--ec2-metadata-url", url, "--labels", "team=search")
    # project: no such tag (404 avoided: only listed keys are read); Name is not an allocation key
    assert series == [({"instance_type": "g5.xlarge", "team": "search", "cost_center": "cc-7"}, 1.5)]
    assert ("PUT", "/latest/api/token", "60") in Imds.seen
    assert all(token == TOKEN for method, _, token in Imds.seen if method == "GET")
    assert ("GET", "/latest/meta-data/tags/instance/Name", TOKEN) not in Imds.seen


def test_tags_not_allowed_in_metadata_give_no_labels(imds):
    _, url = imds
    Imds.tags = None
    series = cost_series("--ec2-tags", "--ec2-metadata-url", url)
    assert series == [({"instance_type": "g5.xlarge"}, 1.5)]


def test_tags_are_off_unless_asked(imds):
    _, url = imds
    Imds.tags = {"team": "ml-platform"}
    series = cost_series("--ec2-metadata-url", url)
    assert series == [({"instance_type": "g5.xlarge"}, 1.5)] and Imds.seen == []


def test_no_metadata_service_gives_no_labels_and_no_crash():
    series = cost_series("--ec2-tags", "--ec2-metadata-url", f"http://127.0.0.1:{helpers.free_port()}")
    assert series == [({"instance_type": "g5.xlarge"}, 1.5)]


def test_library_reads_tags_with_a_token_and_logs_one_line_on_failure(imds, caplog):
    from mlscope.host import cost
    _, url = imds
    Imds.tags = {"project": "ranking", "team": "ml"}
    assert cost.ec2_tag_labels(["team", "project", "cost-center"], url) == {"team": "ml", "project": "ranking"}
    Imds.tags = None
    with caplog.at_level("WARNING"):
        assert cost.ec2_tag_labels(["team"], url) == {}
    assert [r.getMessage() for r in caplog.records] == [
        f"EC2 instance tags not read from {url}: tags are not allowed in instance metadata; no labels from tags"]


def test_tag_keys_are_configurable_and_map_to_label_names(imds):
    _, url = imds
    Imds.tags = {"team": "ml-platform", "owner": "alice", "cost-center": "cc-7"}
    series = cost_series("--ec2-tags", "--ec2-metadata-url", url, "--ec2-tag-keys", "owner,cost-center")
    # team is a tag but not one of the keys asked for: not read, not a label
    assert series == [({"instance_type": "g5.xlarge", "owner": "alice", "cost_center": "cc-7"}, 1.5)]
    assert ("GET", "/latest/meta-data/tags/instance/team", TOKEN) not in Imds.seen


def test_tag_keys_from_the_config_file_and_env_var_flag_wins_over_both(imds, tmp_path):
    _, url = imds
    Imds.tags = {"team": "ml", "project": "ranking", "business-unit": "ads"}
    config = tmp_path / "host.yml"
    config.write_text(f"ec2_tags: true\nec2_metadata_url: {url}\nec2_tag_keys: [business-unit]\n")
    assert cost_series("--config", str(config)) == [
        ({"instance_type": "g5.xlarge", "business_unit": "ads"}, 1.5)]
    proc, base = helpers.start_exporter("host-exporter", "--config", str(config), "--hourly-cost-dollars", "2",
                                        "--instance-type", "g5.xlarge", env={"MLSCOPE_EC2_TAG_KEYS": "project"})
    try:
        assert helpers.samples(helpers.scrape(base))["mlscope_host_hourly_cost_dollars"] == [
            ({"instance_type": "g5.xlarge", "project": "ranking"}, 2.0)]
    finally:
        proc.stop()


@pytest.mark.parametrize("keys, needles", [
    ("Team", ["--ec2-tag-keys", "'Team'", "lower-case letter"]),
    ("team,instance-type", ["--ec2-tag-keys", "'instance-type'", "instance_type label"]),
    ("cost-center,cost_center", ["--ec2-tag-keys", "same label"]),
    (",", ["--ec2-tag-keys", "non-empty list"]),
])
def test_invalid_tag_keys_exit_2_with_one_line(keys, needles):
    result = helpers.run_cli("host-exporter", "--listen", f"127.0.0.1:{helpers.free_port()}", "--ec2-tags",
                             "--ec2-tag-keys", keys)
    helpers.assert_one_line_error(result, *needles)


def test_invalid_tag_keys_in_the_config_file_name_the_setting(tmp_path):
    config = tmp_path / "host.yml"
    config.write_text("ec2_tag_keys: {team: true}\n")
    result = helpers.run_cli("host-exporter", "--listen", f"127.0.0.1:{helpers.free_port()}", "--config", str(config))
    helpers.assert_one_line_error(result, f"ec2_tag_keys in {config}", "non-empty list of tag keys")
