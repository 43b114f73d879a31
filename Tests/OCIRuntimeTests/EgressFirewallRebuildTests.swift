import ContainerRuntime
import Logging
import PlaneCore
import PlaneTestSupport
@testable import ProcessSupervision
import Testing

/// The drone's egress chain against the real packet filter while it is rebuilt: a drone
/// restarting (or re-applying a changed policy) and drones sharing a daemon applying the
/// same chain at once. Nothing may ever see the chain empty or half written, which would
/// let a backend's packets through (an empty chain returns to the parent's rules), and
/// several writers must leave one copy of the rules. The chains here are this test's own
/// (a subnet no other test uses, link prefix `pltq`, which no interface has), removed at the end.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EgressFirewallRebuildTests {
    static let iptables = SystemProgram("iptables", debianPackage: "iptables")

    @Test func aRebuiltChainIsNeverSeenPartialAndConcurrentWritersLeaveOneCopy() async throws {
        let placement = EgressFirewall.Placement.namespaces(subnet: try IPv4Subnet("10.213.252.0/29"), interfacePrefix: "pltq")
        let chain = EgressFirewall.chain(for: placement)
        // A long list widens any window between emptying the chain and writing it.
        let policy = EgressPolicy.allowList(try (1...40).map { try IPv4Subnet("192.0.2.\($0 * 4)/30") })
        let firewalls = try (0..<3).map { _ in try EgressFirewall.make(logger: Logger(label: "test.egress")) }
        do {
            try await firewalls[0].apply(policy, placement: placement)
            let expected = try await Self.iptables.run(["-w", "-S", chain])
            #expect(expected.contains("-A \(chain) -j DROP") && expected.contains("192.0.2.160/30"), "\(expected)")

            let partial = await withTaskGroup(of: [String].self) { group in
                for firewall in firewalls {
                    group.addTask {
                        var failures: [String] = []
                        for _ in 0..<12 {
                            do { try await firewall.apply(policy, placement: placement) } catch { failures.append("apply: \(error)") }
                        }
                        return failures
                    }
                }
                group.addTask {
                    var seen: [String] = []
                    for _ in 0..<80 {
                        guard let rules = try? await Self.iptables.run(["-w", "-S", chain]) else { continue }
                        if rules != expected { seen.append(rules) }
                    }
                    return seen
                }
                var all: [String] = []
                for await found in group { all += found }
                return all
            }
            let seenPartial = partial.count
            #expect(seenPartial == 0, "the chain was seen other than whole, first: \(partial.first?.prefix(600) ?? "")")
            #expect(try await Self.iptables.run(["-w", "-S", chain]) == expected, "writers at once leave one copy of the rules")
            let nat = try await Self.iptables.run(["-w", "-t", "nat", "-S", EgressFirewall.natChain(for: try IPv4Subnet("10.213.252.0/29"))])
            #expect(nat.components(separatedBy: "MASQUERADE").count == 2, "\(nat)")
        } catch {
            Issue.record("\(error)")
        }
        await firewalls[0].remove(placement: placement)
        #expect((try? await Self.iptables.run(["-w", "-S", chain])) == nil, "the chain is removed")
        let forward = try await Self.iptables.run(["-w", "-S", "FORWARD"])
        #expect(!forward.contains(chain), "no jump is left: \(forward)")
    }

    /// Drones starting together on a host with none of the chain's jumps yet: each finds a
    /// jump missing and adds it; the check and the insert are one step under a host-wide
    /// lock, so the parents end with one jump per direction, not one per drone.
    @Test func dronesApplyingAtOnceLeaveOneJumpPerDirection() async throws {
        let subnet = try IPv4Subnet("10.213.252.8/29")
        let placement = EgressFirewall.Placement.namespaces(subnet: subnet, interfacePrefix: "pltq")
        let chain = EgressFirewall.chain(for: placement), natChain = EgressFirewall.natChain(for: subnet)
        let firewalls = try (0..<4).map { _ in try EgressFirewall.make(logger: Logger(label: "test.egress")) }
        var counts: [[Int]] = []
        for _ in 0..<4 {
            await firewalls[0].remove(placement: placement)
            let failures = await withTaskGroup(of: String?.self) { group in
                for firewall in firewalls {
                    group.addTask {
                        do { try await firewall.apply(.allowAll, placement: placement) } catch { return "\(error)" }
                        return nil
                    }
                }
                var failures: [String] = []
                for await failure in group { if let failure { failures.append(failure) } }
                return failures
            }
            #expect(failures.isEmpty, "\(failures)")
            let forward = try await Self.iptables.run(["-w", "-S", "FORWARD"])
            let postrouting = try await Self.iptables.run(["-w", "-t", "nat", "-S", "POSTROUTING"])
            counts.append([forward.components(separatedBy: "-j \(chain)\n").count - 1, postrouting.components(separatedBy: "-j \(natChain)\n").count - 1])
        }
        await firewalls[0].remove(placement: placement)
        #expect(counts.allSatisfy { $0 == [2, 1] }, "jumps in FORWARD and nat POSTROUTING per round: \(counts)")
        let forward = try await Self.iptables.run(["-w", "-S", "FORWARD"])
        #expect(!forward.contains(chain), "no jump is left: \(forward)")
    }
}
