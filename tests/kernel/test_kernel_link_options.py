"""Link options and admin state in real labs (tests/data/linkopts/): what the kernel
holds, read back with `ip -j -d link`, is what the recipe asked for; isolated ports
keep their traffic apart; lab.expect_link agrees with `ip -j link`'s operstate;
`nsbox explain` rebuilds all of it by hand; vlan_filtering SKIPs where the kernel
lacks it; a MAC the validator refuses is one the kernel refuses too."""

import json
import subprocess

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.explain_harness import run_script_and_verify
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip", "unshare")]

RECIPES = str(DATA / "linkopts")
NODES = ("host", "c1", "d")


@pytest.fixture(scope="module")
def lab_dump(tmp_path_factory):
    """One run of link-options; `ip -j -d link` of host, c1 and d taken inside the live lab."""
    from tests.support.runner import Nsbox

    tmp = tmp_path_factory.mktemp("linkopts")
    then = "; ".join(f"ip -n {n} -j -d link show > {tmp / n}.json" for n in NODES)
    run = Nsbox().run("run", "link-options", "--recipes", RECIPES, "--format", "json", "--then", then)
    links = {n: {link["ifname"]: link for link in json.loads((tmp / f"{n}.json").read_text())}
             for n in NODES if (tmp / f"{n}.json").exists()}
    return run, links


def test_the_recipe_passes(lab_dump):
    run, links = lab_dump
    assert run.returncode == 0, run.describe()
    assert run.result["status"] == "pass", run.result
    assert set(links) == set(NODES), links.keys()


def test_bridge_options_in_the_kernel(lab_dump):
    _, links = lab_dump
    br0, br1 = links["host"]["br0"], links["host"]["br1"]
    assert br0["address"] == "02:42:0a:0b:0c:01"
    assert br0["mtu"] == 1400 and br0["txqlen"] == 100
    assert br0["linkinfo"]["info_data"]["stp_state"] == 0
    assert br1["linkinfo"]["info_data"]["stp_state"] == 1


def test_port_options_in_the_kernel(lab_dump):
    _, links = lab_dump
    v1, v2, v3 = (links["host"][f"v{i}"]["linkinfo"] for i in (1, 2, 3))
    assert v1["info_slave_kind"] == "bridge"
    assert (v1["info_slave_data"]["hairpin"], v1["info_slave_data"]["isolated"]) == (True, True)
    assert (v2["info_slave_data"]["hairpin"], v2["info_slave_data"]["isolated"]) == (False, True)
    assert (v3["info_slave_data"]["hairpin"], v3["info_slave_data"]["isolated"]) == (False, False)
    # ip -j leaves qlen out when it is 0
    assert links["host"]["v1"].get("txqlen", 0) == 0 and links["host"]["v3"]["txqlen"] == 1000


def test_veth_peer_options_in_the_kernel(lab_dump):
    """c1's eth0 was made by the host-side request (the peer attributes): its own MAC and qlen."""
    _, links = lab_dump
    eth0 = links["c1"]["eth0"]
    assert eth0["address"] == "02:00:00:00:07:01" and eth0["txqlen"] == 500 and eth0["mtu"] == 1400


def test_kind_link_options_in_the_kernel(lab_dump):
    _, links = lab_dump
    vx0 = links["host"]["vx0"]
    assert vx0["linkinfo"]["info_kind"] == "vxlan"
    assert (vx0["address"], vx0["mtu"], vx0["txqlen"]) == ("02:00:00:00:42:01", 1450, 10)


def test_admin_state_left_down(lab_dump):
    _, links = lab_dump
    assert "UP" not in links["d"]["lo"]["flags"]
    assert "UP" not in links["host"]["vd"]["flags"]
    assert "UP" in links["d"]["eth0"]["flags"] and "NO-CARRIER" in links["d"]["eth0"]["flags"]
    assert "UP" not in links["d"]["x1"]["flags"]


def test_link_checks_agree_with_ip_link(lab_dump):
    """Every expect_link verdict is what `ip -j link` shows for that interface."""
    run, links = lab_dump
    link_checks = [c for c in run.result["checks"] if c["kind"] == "link"]
    assert len(link_checks) == 6
    for c in link_checks:
        node, iface = c["name"].split()[1].split("/")
        kernel = links[node][iface]["operstate"] if node in links else None
        if kernel is None:
            continue
        assert c["observed"] == f"state {kernel}", (c, kernel)
        assert c["passed"]
    assert links["d"]["x0"]["operstate"] == "LOWERLAYERDOWN"


def test_a_wrong_link_state_fails(nsbox, tmp_path):
    """Negative control: the same check against an interface that is UP must FAIL."""
    (tmp_path / "r.py").write_text(
        "from nsbox.recipe import recipe\n"
        "@recipe('wrong-state')\n"
        "def build(lab):\n"
        "    '''c1's eth0 is up, the check says it is down.'''\n"
        "    c = lab.node('c1')\n"
        "    lab.veth(c, 'eth0', lab.host, 'v1')\n"
        "    lab.expect_link(c, 'eth0', 'LOWERLAYERDOWN')\n")
    run = nsbox.run("run", "wrong-state", "--recipes", str(tmp_path), "--format", "json", "--timeout", "0.5")
    assert run.returncode == 1, run.describe()
    [c] = run.result["checks"]
    assert c["kind"] == "link" and not c["passed"] and c["observed"] == "state UP", c


def test_explained_link_options_rebuild_by_hand(nsbox, tmp_path):
    explained = nsbox.run("explain", "link-options", "--recipes", RECIPES)
    assert explained.returncode == 0, explained.describe()
    text = explained.stdout
    assert "ip -n host link add br0 address 02:42:0a:0b:0c:01 mtu 1400 txqueuelen 100 type bridge\n" in text
    assert "ip -n host link set v1 type bridge_slave hairpin on isolated on\n" in text
    assert "ip -n d link set lo up" not in text and "ip -n c1 link set lo up" in text
    done = run_script_and_verify(text, "link-options", tmp_path, recipes_dir=RECIPES)
    assert done.returncode == 0, f"{text}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def test_isolation_is_what_denies(nsbox, tmp_path):
    """Negative control: the script without `isolated on` gives a lab where the
    isolated-ports deny check fails, so the deny above is the port option's doing."""
    explained = nsbox.run("explain", "link-options", "--recipes", RECIPES)
    text = explained.stdout.replace(" hairpin on isolated on\n", " hairpin on\n").replace(
        "ip -n host link set v2 type bridge_slave isolated on\n", "")
    assert text != explained.stdout
    done = run_script_and_verify(text, "link-options", tmp_path, recipes_dir=RECIPES)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL tcp/7 c1->c2 (both ports isolated)" in done.stdout


def _kernel_accepts(*args: str) -> bool:
    return subprocess.run(["unshare", "--user", "--map-root-user", "--net", "ip", "link", "add", *args],
                          capture_output=True, check=False).returncode == 0


def test_vlan_filtering_skips_where_the_kernel_lacks_it(nsbox):
    run = nsbox.run("run", "vlan-filtering", "--recipes", RECIPES, "--format", "json")
    if _kernel_accepts("br9", "type", "bridge", "vlan_filtering", "1"):
        assert run.returncode == 0 and run.result["status"] == "pass", run.describe()
    else:
        assert run.returncode == 4, run.describe()
        assert run.result["status"] == "skip" and "vlan_filtering" in run.result["skip_reason"], run.result


@pytest.mark.parametrize("mac", ["01:00:5e:00:00:01", "00:00:00:00:00:00"])
def test_refused_macs_are_refused_by_the_kernel_too(nsbox, tmp_path, mac):
    """The validator's MAC rule is the kernel's: `ip link add` with that address fails."""
    assert not _kernel_accepts("br9", "address", mac, "type", "bridge")
    assert _kernel_accepts("br9", "address", "02:42:0a:0b:0c:01", "type", "bridge")
    (tmp_path / "r.py").write_text(
        "from nsbox.recipe import recipe\n"
        "@recipe('bad-mac')\n"
        "def build(lab):\n"
        "    '''A bridge with a MAC the kernel refuses.'''\n"
        f"    lab.host.bridge('br0', mac={mac!r})\n")
    run = nsbox.run("run", "bad-mac", "--recipes", str(tmp_path))
    assert run.returncode == 2, run.describe()
    assert "multicast or zero" in run.stderr + run.stdout


def test_the_kernel_refuses_routes_through_a_device_that_is_down():
    """The two validation rules of tests/unit/test_unit_link_options.py, in the kernel:
    a route through a down device and a gateway only on a down device's subnet fail,
    and both succeed once the device is up."""
    script = ("ip link add x0 type veth peer name x1 && ip addr add 10.0.0.1/24 dev x0 && "
              "if ip route add 10.1.0.0/24 dev x0; then exit 10; fi; "
              "if ip route add 10.2.0.0/24 via 10.0.0.2; then exit 11; fi; "
              "ip link set x0 up && ip route add 10.1.0.0/24 dev x0 && ip route add 10.2.0.0/24 via 10.0.0.2")
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "sh", "-c", script],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "not up" in done.stderr and "invalid gateway" in done.stderr
