"""cloud-init user data on the host, without a VM: the YAML read into what the agent is
told, the refusals, the network section applied to a request and to a boot."""

from __future__ import annotations

import base64
import gzip
from ipaddress import IPv4Address, IPv4Interface
from urllib.parse import unquote_to_bytes

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from hypr.daemon.requests import NetworkAttachment, RunRequest
from hypr.daemon.userdata import read_user_data, with_user_data
from hypr.errors import InvalidArgument
from hypr.guest.cloudconfig import UserEntry, WriteFile, parse_user_data
from hypr.guest.cloudtypes import UserDataError
from hypr.guest.spec import GuestNic
from hypr.guest.userdata import SEM_FILE, Instance, encode_bytes, nocloud_seed, userdata_lines

DOC = """#cloud-config
hostname: web1
write_files:
  - path: /etc/app.conf
    content: hello
    permissions: '0640'
    owner: app:app
  - path: /opt/blob
    encoding: b64
    content: aGk=
    permissions: 0755
    append: true
bootcmd:
  - echo boot
  - [touch, /tmp/a file]
runcmd:
  - [sh, -c, "echo $HOME"]
users:
  - default
  - name: app
    uid: 1500
    ssh_authorized_keys: [ssh-ed25519 AAAA app]
ssh_authorized_keys:
  - ssh-ed25519 BBBB root
packages: [nginx]
"""


def test_the_common_subset_is_read_into_plain_values() -> None:
    data = parse_user_data(DOC)
    assert data.hostname == "web1"
    assert data.files == (
        WriteFile("/etc/app.conf", b"hello", "app:app", 0o640, False),
        WriteFile("/opt/blob", b"hi", "root:root", 0o755, True),
    )
    assert data.bootcmd == "#!/bin/sh\necho boot\ntouch '/tmp/a file'\n"
    assert data.runcmd == "#!/bin/sh\nsh -c 'echo $HOME'\n"
    assert data.users == (
        UserEntry("root", keys=("ssh-ed25519 BBBB root",)),
        UserEntry("app", uid=1500, keys=("ssh-ed25519 AAAA app",)),
    )
    assert data.once() == [("runcmd", data.runcmd)]
    assert data.notes == ("packages is not applied (the image has no cloud-init)",)


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("gz+b64", lambda b: base64.b64encode(gzip.compress(b))),
        ("base64", base64.b64encode),
    ],
)
@given(content=st.binary(max_size=200))
def test_encodings_give_back_the_bytes(encoding: str, encode: object, content: bytes) -> None:
    encoded = encode(content)  # type: ignore[operator]
    doc = {"write_files": [{"path": "/f", "encoding": encoding, "content": encoded}]}
    data = parse_user_data("#cloud-config\n" + yaml.safe_dump(doc))
    assert data.files[0].content == content


@given(st.binary(max_size=300))
def test_agent_fields_carry_any_byte_and_never_a_separator(data: bytes) -> None:
    field = encode_bytes(data)
    assert field.isascii() and "\t" not in field and "\n" not in field
    assert unquote_to_bytes(field) == data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#cloud-config\nhostname: a\n  bad: [\n", "line 3"),
        ("#cloud-config\nwrite_files:\n  - path: /x\n    content: 'open\n", "scalar at line 4"),
        ("#cloud-config\nwrite_files: {path: /x}\n", "write_files must be a list"),
        ("#cloud-config\nwrite_files:\n  - path: 3\n", r"write_files\[0\].path must be a string"),
        ("#cloud-config\nruncmd: echo\n", "runcmd must be a list"),
        ("#cloud-config\nusers: [{name: 'a:b'}]\n", r"users\[0\].name"),
        ("#cloud-config\nwrite_files: [{path: /x, permissions: '9'}]\n", "octal"),
        ("#cloud-config\nnetwork: {version: 2, ethernets: {eth0: {dhcp4: 1}}}\n", "dhcp4"),
        ("#cloud-config\nnetwork: {version: 2, ethernets: {eth0: {addresses: [x/24]}}}\n", "x/24"),
        ("#cloud-config\n- a\n", "cloud-config must be a mapping"),
    ],
)
def test_what_cannot_be_applied_is_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(UserDataError, match=message) as caught:
        parse_user_data(text)
    assert "\n" not in str(caught.value)


def test_the_daemon_names_a_bad_hostname() -> None:
    with pytest.raises(InvalidArgument, match="invalid user data: invalid hostname"):
        read_user_data("#cloud-config\nhostname: -bad-\n")


def test_scripts_and_other_user_data() -> None:
    assert parse_user_data("#!/bin/sh\necho hi\n").once() == [("part-001", "#!/bin/sh\necho hi\n")]
    other = parse_user_data("#include http://example.com/x\n")
    assert other.notes and "not applied" in other.notes[0]


NETWORK = """#cloud-config
network:
  version: 2
  ethernets:
    eth0:
      dhcp4: true
      dhcp4-overrides: {use-dns: true, use-routes: true}
    lan:
      match: {macaddress: "02:FC:00:00:00:09"}
      addresses: [10.77.0.50/24, "fd00::5/64"]
      gateway4: 10.77.0.1
      nameservers: {addresses: [1.1.1.1]}
      mtu: 1400
      routes: []
"""


def test_network_entries_find_their_nics_by_name_or_mac() -> None:
    network = parse_user_data(NETWORK).network
    assert network is not None
    eth0, lan = network.ethernets
    assert eth0.dhcp4 and eth0.matches(0, None) and not eth0.matches(1, None)
    assert lan.address == IPv4Interface("10.77.0.50/24")
    assert lan.matches(1, "02:fc:00:00:00:09") and not lan.matches(1, None)
    assert "routes" in " ".join(parse_user_data(NETWORK).notes)


def _request(*attachments: NetworkAttachment) -> RunRequest:
    return RunRequest(image="busybox", networks=list(attachments), user_data=NETWORK)


def test_a_static_address_becomes_the_nics_requested_one() -> None:
    req = with_user_data(
        _request(
            NetworkAttachment(network="a"), NetworkAttachment(network="b", mac="02:fc:00:00:00:09")
        )
    )
    assert [a.ip for a in req.attachments] == [None, "10.77.0.50"]


def test_a_static_address_needs_its_mac_and_agrees_with_ip() -> None:
    with pytest.raises(InvalidArgument, match="matches MAC 02:fc:00:00:00:09"):
        with_user_data(_request(NetworkAttachment(network="a")))
    with pytest.raises(InvalidArgument, match=r"differs from the requested 10\.77\.0\.9"):
        with_user_data(
            _request(
                NetworkAttachment(network="a"),
                NetworkAttachment(network="b", mac="02:fc:00:00:00:09", ip="10.77.0.9"),
            )
        )


NICS = [
    GuestNic("02:fc:00:00:00:01", IPv4Interface("10.88.0.2/16"), IPv4Address("10.88.0.1")),
    GuestNic("02:fc:00:00:00:02", None, IPv4Address("10.89.0.1")),
]


def test_first_boot_carries_the_once_scripts_and_later_boots_only_the_semaphore() -> None:
    data = parse_user_data(DOC)
    first = Instance("vm1", "web1", NICS, ["10.88.0.1"], first_done=None)
    lines = userdata_lines(DOC, data, first, "2024-01-01T00:00:00Z")
    kinds = [line.split("=", 1)[0] for line in lines]
    assert kinds.count("ud.seed") == 3 and kinds.count("ud.once") == 1
    assert kinds.count("ud.boot") == 1 and kinds.count("ud.user") == 2
    sem = next(line for line in lines if SEM_FILE in line)
    assert "2024-01-01T00:00:00Z" in sem
    later = Instance("vm1", "web1", NICS, ["10.88.0.1"], first_done="2023-01-01T00:00:00Z")
    again = userdata_lines(DOC, data, later, "2024-02-02T00:00:00Z")
    assert not any(line.startswith("ud.once=") for line in again)
    assert any("2023-01-01T00:00:00Z" in line for line in again if SEM_FILE in line)


def test_the_nocloud_seed_is_what_cloud_init_reads() -> None:
    seed = dict(nocloud_seed(DOC, Instance("vm1", "web1", NICS, ["10.88.0.1"], None)))
    assert yaml.safe_load(seed["meta-data"]) == {"instance-id": "vm1", "local-hostname": "web1"}
    assert seed["user-data"] == DOC
    assert yaml.safe_load(seed["network-config"]) == {
        "version": 2,
        "ethernets": {
            "eth0": {
                "match": {"macaddress": "02:fc:00:00:00:01"},
                "set-name": "eth0",
                "addresses": ["10.88.0.2/16"],
                "gateway4": "10.88.0.1",
                "nameservers": {"addresses": ["10.88.0.1"]},
            },
            "eth1": {
                "match": {"macaddress": "02:fc:00:00:00:02"},
                "set-name": "eth1",
                "dhcp4": True,
            },
        },
    }
