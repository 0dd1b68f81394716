"""Route 53's name server, asked with dnspython over real UDP and TCP sockets on loopback.

Every routing policy over both transports, the authoritative answers (AA, NXDOMAIN with the
SOA, NODATA, REFUSED, FORMERR, NOTIMP), truncation then TCP, SRV with its addresses,
aliases that follow their target's health, change batches (atomic, validated), and dig.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
from collections import Counter
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierlake.edge.dns import (
    AliasTarget,
    Change,
    DnsPortError,
    DnsServer,
    HostedZone,
    InvalidChangeBatchError,
    InvalidInputError,
    ResourceRecordSet,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
ZONE = "tierlake.test"
HOST = "127.0.0.1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    zone = HostedZone(ZONE, seed=20261201)
    srv = DnsServer(HOST, 0, zone)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def ask(srv: DnsServer, name: str, rdtype: str = "A", *, tcp: bool = False,
              **kw: object) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    if tcp:
        return await dns.asyncquery.tcp(query, HOST, port=srv.port, timeout=5)
    return await dns.asyncquery.udp(query, HOST, port=srv.port, timeout=5)


def values(response: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in response.answer for rd in rrset]


def rrs(name: str, rtype: str, *vals: str, ttl: int = 5, **kw: object) -> ResourceRecordSet:
    return ResourceRecordSet(f"{name}.{ZONE}", rtype, ttl, vals, **kw)  # type: ignore[arg-type]


TRANSPORTS = pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])


@TRANSPORTS
async def test_simple_record_answers_authoritatively(server: DnsServer, tcp: bool) -> None:
    server.zone.change([Change("CREATE", rrs("shop", "A", "127.0.0.1", "127.0.0.2", ttl=7))])
    response = await ask(server, f"shop.{ZONE}", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA  # not a resolver
    assert sorted(values(response)) == ["127.0.0.1", "127.0.0.2"]
    assert response.answer[0].ttl == 7


async def test_names_are_case_insensitive_and_the_case_is_echoed(server: DnsServer) -> None:
    server.zone.change([Change("CREATE", rrs("shop", "A", "127.0.0.1"))])
    response = await ask(server, "ShOp.TierLake.TEST")
    assert values(response) == ["127.0.0.1"]
    assert response.question[0].name.to_text() == "ShOp.TierLake.TEST."
    assert response.answer[0].name.to_text() == "ShOp.TierLake.TEST."


@TRANSPORTS
async def test_apex_has_soa_and_ns(server: DnsServer, tcp: bool) -> None:
    soa = await ask(server, ZONE, "SOA", tcp=tcp)
    assert values(soa)[0].startswith(f"ns1.{ZONE}. hostmaster.{ZONE}. 1 ")
    ns = await ask(server, ZONE, "NS", tcp=tcp)
    assert values(ns) == [f"ns1.{ZONE}."]
    assert [rd.to_text() for rrset in ns.additional for rd in rrset] == ["127.0.0.1"]


@TRANSPORTS
async def test_weighted_follows_the_weights(server: DnsServer, tcp: bool) -> None:
    server.zone.change([
        Change("CREATE", rrs("shop", "A", "127.0.0.1", set_identifier="blue", weight=1)),
        Change("CREATE", rrs("shop", "A", "127.0.0.2", set_identifier="green", weight=3)),
        Change("CREATE", rrs("shop", "A", "127.0.0.3", set_identifier="off", weight=0)),
    ])
    seen: Counter[str] = Counter()
    for _ in range(400):
        answer = values(await ask(server, f"shop.{ZONE}", tcp=tcp))
        assert len(answer) == 1  # one record set per query
        seen[answer[0]] += 1
    assert seen["127.0.0.3"] == 0  # weight 0 while a positive weight is healthy
    assert 0.65 < seen["127.0.0.2"] / 400 < 0.85  # 3/4 expected, seed pinned


async def test_weighted_all_zero_answers_each_equally(server: DnsServer) -> None:
    server.zone.change([
        Change("CREATE", rrs("shop", "A", "127.0.0.1", set_identifier="a", weight=0)),
        Change("CREATE", rrs("shop", "A", "127.0.0.2", set_identifier="b", weight=0)),
    ])
    seen = Counter([values(await ask(server, f"shop.{ZONE}"))[0] for _ in range(200)])
    assert set(seen) == {"127.0.0.1", "127.0.0.2"}
    assert 0.35 < seen["127.0.0.1"] / 200 < 0.65


@TRANSPORTS
async def test_multivalue_answers_up_to_eight_in_random_order(server: DnsServer,
                                                              tcp: bool) -> None:
    addresses = [f"127.0.1.{i}" for i in range(1, 11)]
    server.zone.change([
        Change("CREATE", rrs("pool", "A", a, set_identifier=f"n{i}", multi_value_answer=True))
        for i, a in enumerate(addresses)])
    answers = [values(await ask(server, f"pool.{ZONE}", tcp=tcp)) for _ in range(20)]
    for answer in answers:
        assert len(answer) == 8 == len(set(answer))
        assert set(answer) <= set(addresses)
    assert len({tuple(a) for a in answers}) > 1  # different combinations and orders
    assert set().union(*map(set, answers)) == set(addresses)


@TRANSPORTS
async def test_failover_answers_the_primary_while_healthy(server: DnsServer, tcp: bool) -> None:
    server.zone.change([
        Change("CREATE", rrs("shop", "A", "127.0.0.1", set_identifier="p", failover="PRIMARY")),
        Change("CREATE", rrs("shop", "A", "127.0.0.9", set_identifier="s",
                             failover="SECONDARY")),
    ])
    assert values(await ask(server, f"shop.{ZONE}", tcp=tcp)) == ["127.0.0.1"]


@TRANSPORTS
async def test_alias_with_target_health_fails_over(server: DnsServer, tcp: bool) -> None:
    """The lead's wiring: shop.<zone> is an alias of the load balancer's nodes, evaluated
    on whether it has a healthy target; a static secondary takes over while it has none."""
    lb_has_healthy_target = True
    server.zone.change([
        Change("CREATE", ResourceRecordSet(
            f"shop.{ZONE}", "A", set_identifier="alb", failover="PRIMARY",
            alias_target=AliasTarget("web.elb.tierlake.test", True, ("127.0.0.1", "127.0.0.2"),
                                     lambda: lb_has_healthy_target))),
        Change("CREATE", rrs("shop", "A", "127.0.0.9", set_identifier="sorry",
                             failover="SECONDARY")),
    ])
    first = await ask(server, f"shop.{ZONE}", tcp=tcp)
    assert sorted(values(first)) == ["127.0.0.1", "127.0.0.2"]
    assert first.answer[0].ttl == 60  # Route 53's TTL for an alias to a load balancer
    lb_has_healthy_target = False
    assert values(await ask(server, f"shop.{ZONE}", tcp=tcp)) == ["127.0.0.9"]
    lb_has_healthy_target = True
    assert sorted(values(await ask(server, f"shop.{ZONE}", tcp=tcp))) == ["127.0.0.1",
                                                                          "127.0.0.2"]


async def test_alias_to_a_record_of_the_zone(server: DnsServer) -> None:
    server.zone.change([
        Change("CREATE", rrs("shop", "A", "127.0.0.1", ttl=11)),
        Change("CREATE", ResourceRecordSet(ZONE, "A", alias_target=AliasTarget(f"shop.{ZONE}"))),
    ])
    response = await ask(server, ZONE)
    assert values(response) == ["127.0.0.1"]
    assert response.answer[0].ttl == 11  # the target's TTL
    assert response.answer[0].name.to_text() == f"{ZONE}."  # not a CNAME


async def test_cname_is_followed_inside_the_zone(server: DnsServer) -> None:
    server.zone.change([Change("CREATE", rrs("shop", "A", "127.0.0.1")),
                        Change("CREATE", rrs("www", "CNAME", f"shop.{ZONE}"))])
    response = await ask(server, f"www.{ZONE}")
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert values(response) == [f"shop.{ZONE}.", "127.0.0.1"]


@TRANSPORTS
async def test_srv_gives_the_port_and_the_addresses(server: DnsServer, tcp: bool) -> None:
    server.zone.change([
        Change("CREATE", rrs("shop", "A", "127.0.0.1", "127.0.0.2")),
        Change("CREATE", rrs("_http._tcp.shop", "SRV", f"0 1 8080 shop.{ZONE}")),
    ])
    response = await ask(server, f"_http._tcp.shop.{ZONE}", "SRV", tcp=tcp)
    (srv,) = response.answer[0]
    assert (srv.port, srv.target.to_text()) == (8080, f"shop.{ZONE}.")
    assert sorted(rd.to_text() for rrset in response.additional for rd in rrset) == [
        "127.0.0.1", "127.0.0.2"]


@TRANSPORTS
async def test_missing_name_is_nxdomain_with_the_soa(server: DnsServer, tcp: bool) -> None:
    response = await ask(server, f"nope.{ZONE}", tcp=tcp)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert not response.answer
    assert response.authority[0].rdtype == dns.rdatatype.SOA
    assert response.authority[0].ttl == 900  # min(SOA TTL, SOA minimum): negative caching


@TRANSPORTS
async def test_missing_type_is_nodata(server: DnsServer, tcp: bool) -> None:
    server.zone.change([Change("CREATE", rrs("_http._tcp.shop", "SRV", f"0 1 80 ns1.{ZONE}"))])
    for name, rdtype in ((f"ns1.{ZONE}", "AAAA"), (f"_tcp.shop.{ZONE}", "A")):
        response = await ask(server, name, rdtype, tcp=tcp)  # the second: an empty parent
        assert response.rcode() == dns.rcode.NOERROR
        assert not response.answer
        assert response.authority[0].rdtype == dns.rdatatype.SOA


@TRANSPORTS
async def test_names_outside_the_zone_are_refused(server: DnsServer, tcp: bool) -> None:
    response = await ask(server, "example.com", tcp=tcp)
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA


async def test_malformed_packets_get_formerr(server: DnsServer) -> None:
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            replies.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(HOST, server.port))
    try:
        # a header announcing one question, then garbage
        transport.sendto(struct.pack("!HHHHHH", 4242, 0x0100, 1, 0, 0, 0) + b"\xff\xfe")
        reply = await asyncio.wait_for(replies.get(), 5)
        assert struct.unpack("!H", reply[:2])[0] == 4242
        assert reply[3] & 0x0F == dns.rcode.FORMERR
        assert reply[2] & 0x80  # QR
        # two questions in one query
        two = dns.message.make_query(f"shop.{ZONE}", "A")
        two.question.append(dns.message.make_query(f"www.{ZONE}", "A").question[0])
        transport.sendto(two.to_wire())
        reply = await asyncio.wait_for(replies.get(), 5)
        assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR
    finally:
        transport.close()
    assert server.counters.by_rcode["FORMERR"] == 2


@TRANSPORTS
async def test_other_opcodes_are_not_implemented(server: DnsServer, tcp: bool) -> None:
    query = dns.message.make_query(ZONE, "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    response = await send(query, HOST, port=server.port, timeout=5)
    assert response.rcode() == dns.rcode.NOTIMP


async def test_edns_version_above_zero_gets_badvers(server: DnsServer) -> None:
    response = await ask(server, ZONE, "SOA", use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS
    assert (await ask(server, ZONE, "SOA", use_edns=0)).edns == 0


async def test_zone_transfer_is_refused(server: DnsServer) -> None:
    response = await ask(server, ZONE, "AXFR", tcp=True)
    assert response.rcode() == dns.rcode.REFUSED


async def test_large_answer_is_truncated_over_udp_then_whole_over_tcp(
        server: DnsServer) -> None:
    texts = [f'"{"x" * 200} {i}"' for i in range(5)]  # about 1,100 bytes
    server.zone.change([Change("CREATE", rrs("big", "TXT", *texts))])
    plain = await ask(server, f"big.{ZONE}", "TXT", use_edns=False)
    assert plain.flags & dns.flags.TC
    assert len(plain.to_wire()) <= 512
    edns = await ask(server, f"big.{ZONE}", "TXT", use_edns=0, payload=4096)
    assert not edns.flags & dns.flags.TC  # fits the smaller of 4096 and our 1232 bytes
    texts.append(f'"{"y" * 200}"')
    server.zone.change([Change("UPSERT", rrs("big", "TXT", *texts))])
    edns = await ask(server, f"big.{ZONE}", "TXT", use_edns=0, payload=4096)
    assert edns.flags & dns.flags.TC  # 1,300 bytes: above our 1232, whatever the client says
    query = dns.message.make_query(f"big.{ZONE}", "TXT", use_edns=False)
    response, used_tcp = await dns.asyncquery.udp_with_fallback(query, HOST, port=server.port,
                                                                timeout=5)
    assert used_tcp
    assert len(values(response)) == 6
    assert server.counters.truncated >= 2


async def test_one_tcp_connection_carries_several_queries(server: DnsServer) -> None:
    server.zone.change([Change("CREATE", rrs("shop", "A", "127.0.0.1"))])
    reader, writer = await asyncio.open_connection(HOST, server.port)
    try:
        names = [f"shop.{ZONE}", f"nope.{ZONE}", ZONE]
        for name in names:  # pipelined: all sent before any answer is read
            wire = dns.message.make_query(name, "A").to_wire()
            writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        rcodes = []
        for _ in names:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            rcodes.append(dns.message.from_wire(await reader.readexactly(length)).rcode())
        assert rcodes == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR]
    finally:
        writer.close()


async def test_change_batch_is_atomic_and_upsert_delete_work(server: DnsServer) -> None:
    good = rrs("shop", "A", "127.0.0.1")
    with pytest.raises(InvalidChangeBatchError) as err:
        server.zone.change([Change("CREATE", good),
                            Change("CREATE", rrs("www", "A", "not-an-address"))])
    assert "not a valid A value" in str(err.value)
    assert (await ask(server, f"shop.{ZONE}")).rcode() == dns.rcode.NXDOMAIN  # nothing applied
    server.zone.change([Change("CREATE", good)])
    server.zone.change([Change("UPSERT", rrs("shop", "A", "127.0.0.5"))])
    assert values(await ask(server, f"shop.{ZONE}")) == ["127.0.0.5"]
    with pytest.raises(InvalidChangeBatchError, match="not found"):
        server.zone.change([Change("DELETE", good)])  # values must match exactly
    server.zone.change([Change("DELETE", rrs("shop", "A", "127.0.0.5"))])
    assert (await ask(server, f"shop.{ZONE}")).rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize(("batch", "words"), [
    ([rrs("shop", "A", "127.0.0.1"), rrs("shop", "A", "127.0.0.2")], "already exists"),
    ([ResourceRecordSet("shop.example.com", "A", 5, ("127.0.0.1",))], "not in the hosted zone"),
    ([rrs("shop", "A", "127.0.0.1"),
      rrs("shop", "A", "127.0.0.2", set_identifier="b", weight=1)], "share one routing policy"),
    ([rrs("shop", "A", "127.0.0.1", set_identifier="b", weight=256)], "use 0 to 255"),
    ([rrs("shop", "A", "127.0.0.1", weight=1)], "need a SetIdentifier"),
    ([rrs("shop", "A", "127.0.0.1", set_identifier="x")], "only for weighted"),
    ([rrs("shop", "A", "127.0.0.1", "127.0.0.2", set_identifier="m",
          multi_value_answer=True)], "one value"),
    ([rrs("a", "A", "127.0.0.1", set_identifier="p", failover="PRIMARY"),
      rrs("a", "A", "127.0.0.2", set_identifier="q", failover="PRIMARY")], "only one PRIMARY"),
    ([rrs("www", "CNAME", f"shop.{ZONE}"), rrs("www", "TXT", '"x"')], "cannot coexist"),
    ([ResourceRecordSet(ZONE, "CNAME", 5, (f"shop.{ZONE}",))], "zone apex"),
    ([rrs("shop", "A", "127.0.0.1", set_identifier="w", weight=1,
          health_check_id="no-such-check")], "does not exist"),
    ([rrs("shop", "A")], "at least one value"),
    ([rrs("shop", "HINFO", '"a" "b"')], "unsupported type"),
    ([ResourceRecordSet(f"shop.{ZONE}", "A", alias_target=AliasTarget(
        "lb", True, ("127.0.0.1",)))], "EvaluateTargetHealth needs target_health"),
], ids=["create-twice", "outside-zone", "mixed-policies", "weight-range", "no-set-id",
        "set-id-on-simple", "multivalue-two-values", "two-primaries", "cname-and-other",
        "cname-at-apex", "unknown-health-check", "no-values", "unsupported-type",
        "alias-health-without-callable"])
def test_invalid_change_batches_say_what_is_wrong(batch: list[ResourceRecordSet],
                                                 words: str) -> None:
    zone = HostedZone(ZONE)
    with pytest.raises(InvalidChangeBatchError, match=words):
        zone.change([Change("CREATE", record) for record in batch])
    assert sorted(r.type for r in zone.list_resource_record_sets()) == ["A", "NS", "SOA"]


def test_apex_soa_cannot_be_deleted_and_zone_must_be_special_use() -> None:
    zone = HostedZone(ZONE)
    soa = next(r for r in zone.list_resource_record_sets() if r.type == "SOA")
    with pytest.raises(InvalidChangeBatchError, match="UPSERT them instead"):
        zone.change([Change("DELETE", soa)])
    with pytest.raises(InvalidInputError, match="special-use"):
        HostedZone("shop.com")


async def test_counters_count_queries_by_type_rcode_and_transport(server: DnsServer) -> None:
    await ask(server, ZONE, "SOA")
    await ask(server, f"nope.{ZONE}", "AAAA", tcp=True)
    await ask(server, "example.com")
    snap = server.counters.snapshot()
    assert snap["by_type"] == {"SOA": 1, "AAAA": 1, "A": 1}
    assert snap["by_rcode"] == {"NOERROR": 1, "NXDOMAIN": 1, "REFUSED": 1}
    assert snap["by_transport"] == {"udp": 2, "tcp": 1}


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
async def test_dig_resolves_the_shop(server: DnsServer) -> None:
    server.zone.change([Change("CREATE", rrs("shop", "A", "127.0.0.1", "127.0.0.2"))])
    for mode in ("+notcp", "+tcp"):
        proc = await asyncio.create_subprocess_exec(
            "dig", f"@{HOST}", "-p", str(server.port), f"shop.{ZONE}", mode, "+short",
            "+time=3", "+tries=1", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        assert sorted(out.decode().split()) == ["127.0.0.1", "127.0.0.2"]


async def test_any_answers_every_type_at_the_name(server: DnsServer) -> None:
    server.zone.change([Change("CREATE", rrs("shop", "A", "127.0.0.1")),
                        Change("CREATE", rrs("shop", "TXT", '"tierlake"'))])
    response = await ask(server, f"shop.{ZONE}", "ANY", tcp=True)
    assert sorted(dns.rdatatype.to_text(r.rdtype) for r in response.answer) == ["A", "TXT"]


async def test_a_port_in_use_is_a_clear_error(server: DnsServer) -> None:
    second = DnsServer(HOST, server.port, HostedZone(ZONE))
    with pytest.raises(DnsPortError, match=r"cannot listen on 127\.0\.0\.1:\d+/udp .*dns\.port"):
        await second.start()


async def test_stop_closes_open_tcp_connections() -> None:
    srv = DnsServer(HOST, 0, HostedZone(ZONE))
    await srv.start()
    reader, writer = await asyncio.open_connection(HOST, srv.port)
    try:
        wire = dns.message.make_query(ZONE, "SOA").to_wire()
        writer.write(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        await reader.readexactly(length)
        await srv.stop()  # the idle connection is closed, not waited out
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
    query = dns.message.make_query(ZONE, "SOA")
    with pytest.raises(OSError):
        await dns.asyncquery.tcp(query, HOST, port=srv.port, timeout=5)


async def test_an_idle_tcp_connection_is_closed_by_the_server() -> None:
    srv = DnsServer(HOST, 0, HostedZone(ZONE), tcp_idle_seconds=0.2)
    await srv.start()
    try:
        reader, writer = await asyncio.open_connection(HOST, srv.port)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, nothing sent
        writer.close()
    finally:
        await srv.stop()


async def test_status_lists_record_sets_with_their_health(server: DnsServer) -> None:
    healthy = False
    server.zone.change([Change("CREATE", ResourceRecordSet(
        f"shop.{ZONE}", "A", set_identifier="alb", failover="PRIMARY",
        alias_target=AliasTarget("web.elb", True, ("127.0.0.1",), lambda: healthy)))])
    status = server.status()
    assert status["listen"] == f"{HOST}:{server.port}"
    record_sets = status["record_sets"]
    assert isinstance(record_sets, list)
    (shop,) = [r for r in record_sets if r["Name"] == f"shop.{ZONE}."]
    assert (shop["RoutingPolicy"], shop["Failover"], shop["Healthy"]) == ("failover", "PRIMARY",
                                                                         False)


FUZZ_SERVER = DnsServer(HOST, 0, HostedZone(ZONE))  # respond() needs no socket


VALID = dns.message.make_query(f"shop.{ZONE}", "A", use_edns=0).to_wire()


def _mutated(cuts: list[tuple[int, int]]) -> bytes:
    wire = bytearray(VALID)
    for position, value in cuts:
        wire[position % len(wire)] = value
    return bytes(wire)


PACKETS = st.one_of(
    st.binary(min_size=12, max_size=80),  # anything with a header
    st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), min_size=1,
             max_size=6).map(_mutated),  # a real query with bytes changed
    st.integers(12, len(VALID)).map(lambda n: VALID[:n]),  # a real query cut short
)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(wire=PACKETS)
def test_any_packet_gets_an_answer_with_its_id_or_none(wire: bytes) -> None:
    """Whatever arrives, the server answers with the packet's id, or drops a response."""
    answer = FUZZ_SERVER.respond(wire, transport="udp")
    if wire[2] & 0x80:  # QR: a response, never answered
        assert answer is None
        return
    assert answer is not None
    assert answer[:2] == wire[:2]
    assert answer[2] & 0x80
    assert len(answer) <= 1232
    dns.message.from_wire(answer)  # and it parses
