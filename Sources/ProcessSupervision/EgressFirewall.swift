import ContainerRuntime
import Foundation
import Logging

/// The packet filter rules that hold a drone's `egress` allow list (and, for namespace
/// networking, let its backends out at all), made with `iptables` — the same tables and
/// backend Docker uses, so the rules of both see the same packets (Docker's `FORWARD`
/// policy is DROP; rules made with `nft` in a table of their own could not accept what it
/// drops). docs/adr/0003 records why iptables and not nftables.
///
/// Every rule lives in a chain of the drone's own, rebuilt whole on each `apply` (so a
/// changed list never leaves an old network allowed) and jumped to from one rule per
/// direction in the parent chain. The rebuild is one `iptables-restore --noflush`
/// transaction: a packet (or another drone applying the same chain, as drones sharing a
/// daemon do when they start together) never sees the chain empty or half written.
/// What the chain decides:
///
/// - `.docker(bridge:)`: parent `DOCKER-USER`, jumped to for packets in from the managed
///   network's bridge. Replies and packets to a listed network go back to Docker's rules
///   (which accept them); everything else is dropped.
/// - `.namespaces(subnet:interfacePrefix:)`: parent `FORWARD` (and `POSTROUTING` in `nat`
///   for masquerading), for packets from and to `subnet` through the backends' links.
///   Replies are accepted; new connections into a backend and between backends are
///   dropped; new ones out are accepted to what the policy allows, dropped otherwise.
public struct EgressFirewall: Sendable {
    /// Where the drone's chain hangs.
    public enum Placement: Sendable, Hashable {
        /// Docker's managed bridge network, by its Linux interface name.
        case docker(bridge: String)
        /// The OCI runtime's backend namespaces: their subnet and the prefix of the
        /// drone's ends of their links.
        case namespaces(subnet: IPv4Subnet, interfacePrefix: String)
    }

    let iptables: String
    let iptablesRestore: String
    let logger: Logger

    public init(iptables: String, iptablesRestore: String, logger: Logger) {
        self.iptables = iptables
        self.iptablesRestore = iptablesRestore
        self.logger = logger
    }

    /// Finds `iptables` and `iptables-restore` (Debian's `iptables` package; Docker depends on it).
    public static func make(logger: Logger) throws(RuntimeError) -> EgressFirewall {
        for directory in ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"]
        where FileManager.default.isExecutableFile(atPath: "\(directory)/iptables") && FileManager.default.isExecutableFile(atPath: "\(directory)/iptables-restore") {
            return EgressFirewall(iptables: "\(directory)/iptables", iptablesRestore: "\(directory)/iptables-restore", logger: logger)
        }
        throw RuntimeError(.unavailable, "An egress allow list needs iptables and iptables-restore: apt-get install -y iptables (and root, CAP_NET_ADMIN).")
    }

    /// The filter chain's name for a placement (iptables allows 28 characters).
    public static func chain(for placement: Placement) -> String {
        switch placement {
        case .docker(let bridge): "PLANE-DKR-\(bridge.prefix(15))"
        case .namespaces(let subnet, _): "PLANE-OCI-\(hex(subnet.base))-\(subnet.prefixLength)"
        }
    }

    /// The nat chain of namespace networking (masquerading backends' connections out).
    static func natChain(for subnet: IPv4Subnet) -> String { "PLANE-NAT-\(hex(subnet.base))-\(subnet.prefixLength)" }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// The rules, as `iptables` argument lists, of the drone's chains (pure: unit-tested);
    /// `apply` writes them with `restoreScript`.
    static func rules(_ policy: EgressPolicy, placement: Placement) -> [[String]] {
        let chain = chain(for: placement)
        var rules: [[String]] = []
        switch placement {
        case .docker:
            rules.append(["-A", chain, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"])
            switch policy {
            case .allowAll: rules.append(["-A", chain, "-j", "RETURN"])
            case .denyAll: break
            case .allowList(let networks):
                for network in networks { rules.append(["-A", chain, "-d", network.description, "-j", "RETURN"]) }
            }
            rules.append(["-A", chain, "-j", "DROP"])
        case .namespaces(let subnet, let prefix):
            let links = "\(prefix)+"
            rules.append(["-A", chain, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"])
            rules.append(["-A", chain, "-o", links, "-j", "DROP"])
            rules.append(["-A", chain, "!", "-s", subnet.description, "-j", "DROP"])
            switch policy {
            case .allowAll: rules.append(["-A", chain, "-j", "ACCEPT"])
            case .denyAll: break
            case .allowList(let networks):
                for network in networks { rules.append(["-A", chain, "-d", network.description, "-j", "ACCEPT"]) }
            }
            rules.append(["-A", chain, "-j", "DROP"])
            rules.append(["-t", "nat", "-A", natChain(for: subnet), "!", "-o", links, "-j", "MASQUERADE"])
        }
        return rules
    }

    /// The parent chains' jump rules (without `-I`/`-C`/`-D` and the parent's name).
    static func jumps(placement: Placement) -> [(table: String, parent: String, rule: [String])] {
        let chain = chain(for: placement)
        switch placement {
        case .docker(let bridge):
            return [("filter", "DOCKER-USER", ["-i", bridge, "-j", chain])]
        case .namespaces(let subnet, let prefix):
            let links = "\(prefix)+"
            return [("filter", "FORWARD", ["-i", links, "-s", subnet.description, "-j", chain]),
                    ("filter", "FORWARD", ["-o", links, "-d", subnet.description, "-j", chain]),
                    ("nat", "POSTROUTING", ["-s", subnet.description, "-j", natChain(for: subnet)])]
        }
    }

    /// The drone's chains of a placement, by table.
    static func chains(placement: Placement) -> [(table: String, chain: String)] {
        var chains = [("filter", chain(for: placement))]
        if case .namespaces(let subnet, _) = placement { chains.append(("nat", natChain(for: subnet))) }
        return chains
    }

    /// The `iptables-restore --noflush` input that replaces the drone's chains with the
    /// rules of `policy` in one transaction per table (pure: unit-tested). With `--noflush`,
    /// a chain's declaration (`:NAME - [0:0]`) creates it or empties it; no other chain is
    /// touched. Each token must be a single word of the format (no space, quote, `#`).
    static func restoreScript(_ policy: EgressPolicy, placement: Placement) throws(RuntimeError) -> String {
        var byTable: [String: [[String]]] = [:]
        for rule in rules(policy, placement: placement) {
            if rule.count > 2, rule[0] == "-t" { byTable[rule[1], default: []].append(Array(rule.dropFirst(2))) } else { byTable["filter", default: []].append(rule) }
        }
        var script = ""
        for (table, chain) in chains(placement: placement) {
            script += "*\(table)\n:\(chain) - [0:0]\n"
            for rule in byTable[table] ?? [] {
                for token in rule where token.isEmpty || token.utf8.contains(where: { $0 <= 32 || $0 == 34 || $0 == 39 || $0 == 35 || $0 >= 127 }) {
                    throw RuntimeError(.invalidSpec, "The egress rule token '\(token.prefix(64))' cannot be written for iptables-restore; this is a bug in Plane's rule builder.")
                }
                script += rule.joined(separator: " ") + "\n"
            }
            script += "COMMIT\n"
        }
        return script
    }

    /// The lock drones hold while they add their jumps (in `/run`, which only root writes,
    /// so no other user can hold it to stall a drone's start).
    static let jumpLockPath = "/run/plane-egress.lock"

    /// Builds the drone's chains for `policy` and makes sure the parents jump to them,
    /// once each, also when drones sharing the host apply at the same moment.
    public func apply(_ policy: EgressPolicy, placement: Placement) async throws(RuntimeError) {
        let script = try Self.restoreScript(policy, placement: placement)
        let completion = try await ProcessSpawner.run(iptablesRestore, ["-w", "--noflush"], input: script)
        guard completion.succeeded else {
            let detail = completion.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
            throw RuntimeError(.unavailable, "iptables-restore could not write the egress chain \(Self.chain(for: placement)): \(completion.statusDescription): \(detail.prefix(500)) The egress policy needs root (CAP_NET_ADMIN).")
        }
        // Check and insert are two iptables runs: drones starting together would each find a
        // jump missing and each add one. A host-wide lock makes the pair one step.
        let lock = await HostFileLock.acquire(Self.jumpLockPath)
        if lock == nil { logger.warning("egress.jump_lock_unavailable", metadata: ["plane.lock": "\(Self.jumpLockPath)"]) }
        for jump in Self.jumps(placement: placement) {
            let present = try await iptables(["-t", jump.table, "-C", jump.parent] + jump.rule, tolerating: "")
            if !present { try await iptables(["-t", jump.table, "-I", jump.parent, "1"] + jump.rule) }
        }
        _ = consume lock
        logger.info("egress.firewall_applied", metadata: ["plane.egress": "\(policy)", "plane.chain": "\(Self.chain(for: placement))"])
    }

    /// Removes the drone's chains and the jumps to them (what is missing already is fine).
    public func remove(placement: Placement) async {
        for jump in Self.jumps(placement: placement) {
            while (try? await iptables(["-t", jump.table, "-D", jump.parent] + jump.rule, tolerating: "")) == true {}
        }
        for (table, chain) in Self.chains(placement: placement) {
            _ = try? await iptables(["-t", table, "-F", chain], tolerating: "")
            _ = try? await iptables(["-t", table, "-X", chain], tolerating: "")
        }
    }

    /// Runs `iptables -w` with `arguments`; throws on failure unless its error output
    /// contains `tolerating` (then returns false; an empty string tolerates any failure).
    @discardableResult
    func iptables(_ arguments: [String], tolerating: String? = nil) async throws(RuntimeError) -> Bool {
        let completion = try await ProcessSpawner.run(iptables, ["-w"] + arguments)
        if completion.succeeded { return true }
        let detail = completion.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
        if let tolerating, tolerating.isEmpty || detail.localizedCaseInsensitiveContains(tolerating) { return false }
        throw RuntimeError(.unavailable, "iptables \(arguments.joined(separator: " ")) ended with \(completion.statusDescription): \(detail.prefix(500)) The egress policy needs root (CAP_NET_ADMIN).")
    }
}
