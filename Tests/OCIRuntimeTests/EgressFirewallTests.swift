import ContainerRuntime
import PlaneCore
@testable import ProcessSupervision
import Testing

/// The `egress` setting and the iptables rules that hold it (pure; the real packet filter
/// is exercised by OCINetworkNamespaceTests.egressPolicies, DockerNetworkIsolationTests and
/// EgressFirewallRebuildTests).
struct EgressFirewallTests {
    @Test func theSettingIsAllowDenyOrAListOfNetworks() throws {
        #expect(try EgressPolicy(setting: .string("allow")) == .allowAll)
        #expect(try EgressPolicy(setting: .string("deny")) == .denyAll)
        let list = try EgressPolicy(setting: .array([.string("10.0.0.0/8"), .string("203.0.113.7/32"), .string("10.0.0.0/8")]))
        #expect(list == .allowList([try IPv4Subnet("10.0.0.0/8"), try IPv4Subnet("203.0.113.7/32")]), "duplicates once")
        #expect(list.setting == .array([.string("10.0.0.0/8"), .string("203.0.113.7/32")]))
        for bad: JSONValue in [.string("some"), .array([]), .array([.integer(5)]), .array([.string("10.0.0.1/8")]), .array([.string("::1/128")]),
                               .integer(1), .array(Array(repeating: .string("10.0.0.0/8"), count: EgressPolicy.maximumNetworks + 1))] {
            #expect(throws: RuntimeError.self, "\(bad)") { try EgressPolicy(setting: bad) }
        }
    }

    @Test func dockerRulesReturnWhatIsAllowedAndDropTheRest() throws {
        let placement = EgressFirewall.Placement.docker(bridge: "br-16bea392b9f3")
        let chain = EgressFirewall.chain(for: placement)
        #expect(chain == "PLANE-DKR-br-16bea392b9f3" && chain.count <= 28)
        let rules = EgressFirewall.rules(.allowList([try IPv4Subnet("10.215.244.2/32")]), placement: placement)
        #expect(rules == [["-A", chain, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
                          ["-A", chain, "-d", "10.215.244.2/32", "-j", "RETURN"],
                          ["-A", chain, "-j", "DROP"]])
        #expect(EgressFirewall.jumps(placement: placement).map(\.parent) == ["DOCKER-USER"])
        #expect(EgressFirewall.rules(.denyAll, placement: placement).last == ["-A", chain, "-j", "DROP"])
    }

    @Test func namespaceRulesNeverForwardBetweenBackends() throws {
        let subnet = try IPv4Subnet("10.213.0.0/16")
        let placement = EgressFirewall.Placement.namespaces(subnet: subnet, interfacePrefix: "plane")
        let chain = EgressFirewall.chain(for: placement)
        #expect(chain == "PLANE-OCI-0AD50000-16" && chain.count <= 28)
        for policy in [EgressPolicy.allowAll, .allowList([try IPv4Subnet("0.0.0.0/0")])] {
            let rules = EgressFirewall.rules(policy, placement: placement)
            // Replies first, then the drops that hold whatever the policy: into a backend's
            // link, from outside the subnet; then what the policy lets out.
            #expect(rules[0].contains("RELATED,ESTABLISHED") && rules[1] == ["-A", chain, "-o", "plane+", "-j", "DROP"])
            #expect(rules[2] == ["-A", chain, "!", "-s", "10.213.0.0/16", "-j", "DROP"])
            #expect(rules.contains(["-t", "nat", "-A", "PLANE-NAT-0AD50000-16", "!", "-o", "plane+", "-j", "MASQUERADE"]))
        }
        let jumps = EgressFirewall.jumps(placement: placement)
        #expect(jumps.map(\.parent) == ["FORWARD", "FORWARD", "POSTROUTING"])
        #expect(EgressFirewall.natChain(for: try IPv4Subnet("192.168.240.0/20")) == "PLANE-NAT-C0A8F000-20")
    }

    @Test func theChainsAreRewrittenInOneRestoreTransactionPerTable() throws {
        let placement = EgressFirewall.Placement.namespaces(subnet: try IPv4Subnet("10.213.0.0/16"), interfacePrefix: "plane")
        let script = try EgressFirewall.restoreScript(.allowList([try IPv4Subnet("203.0.113.7/32")]), placement: placement)
        #expect(script == """
            *filter
            :PLANE-OCI-0AD50000-16 - [0:0]
            -A PLANE-OCI-0AD50000-16 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
            -A PLANE-OCI-0AD50000-16 -o plane+ -j DROP
            -A PLANE-OCI-0AD50000-16 ! -s 10.213.0.0/16 -j DROP
            -A PLANE-OCI-0AD50000-16 -d 203.0.113.7/32 -j ACCEPT
            -A PLANE-OCI-0AD50000-16 -j DROP
            COMMIT
            *nat
            :PLANE-NAT-0AD50000-16 - [0:0]
            -A PLANE-NAT-0AD50000-16 ! -o plane+ -j MASQUERADE
            COMMIT

            """)
        let docker = try EgressFirewall.restoreScript(.denyAll, placement: .docker(bridge: "br-16bea392b9f3"))
        #expect(docker.hasPrefix("*filter\n:PLANE-DKR-br-16bea392b9f3 - [0:0]\n") && docker.hasSuffix("-j DROP\nCOMMIT\n") && !docker.contains("*nat"))
        // The longest list the setting takes fits the restore's standard input (64 KiB).
        let widest = EgressPolicy.allowList((0..<EgressPolicy.maximumNetworks).map { IPv4Subnet(base: UInt32(0xC000_0000) + UInt32($0) << 8, prefixLength: 24) })
        #expect(try EgressFirewall.restoreScript(widest, placement: placement).utf8.count < 65_536)
        // A token that would split or comment the line is refused, never written.
        #expect(throws: RuntimeError.self) { try EgressFirewall.restoreScript(.allowAll, placement: .docker(bridge: "br x")) }
        #expect(throws: RuntimeError.self) { try EgressFirewall.restoreScript(.allowAll, placement: .docker(bridge: "br#1")) }
    }
}
