import ContainerRuntime
import Foundation
import Logging
import PlaneCore
import ProcessSupervision
import Synchronization

/// Where a backend with its own network namespace is (`backend.json`), so a restarted drone
/// reaches it, keeps its address taken and removes the namespace with the backend.
public struct OCIBackendNetwork: Codable, Sendable, Hashable {
    /// The namespace's name (`/run/netns/{namespace}`), also the name of the drone's end
    /// of the backend's veth link.
    public var namespace: String
    /// The drone's end of the link (the backend's default gateway).
    public var hostAddress: String
    /// The backend's address (`eth0` in its namespace).
    public var address: String

    enum CodingKeys: String, CodingKey {
        case namespace
        case hostAddress = "host_address"
        case address
    }

    public var path: String { "\(OCINetworkNamespaces.directory)/\(namespace)" }
}

/// `[agent.oci] network = "namespace"`: each backend gets a network namespace of its own,
/// linked to the drone's by a veth pair with a /31 from `subnet` (the drone's end the even
/// address, the backend's `eth0` the odd one, its default route through the drone's end).
/// The drone reaches the backend at its address and `PORT`; backends do not share the
/// drone's loopback, and nothing that comes in on their links is forwarded. Made with iproute2's `ip` (`ip netns`, three `ip` runs per
/// backend), which needs CAP_NET_ADMIN.
///
/// Each namespace this drone made is marked by a file of its name in `ownedDirectory`
/// (written right after `ip netns add` succeeded, removed after the namespace is deleted):
/// only marked namespaces are ever deleted, so drones that share a host and a subnet (two
/// drones started with the default, or tests running side by side) skip each other's
/// addresses instead of deleting each other's namespaces.
public final class OCINetworkNamespaces: Sendable {
    /// Where `ip netns` keeps named namespaces.
    public static let directory = "/run/netns"

    let ip: String
    let logger: Logger
    /// One empty file per namespace this drone made.
    let ownedDirectory: String
    /// Whether packets from backends are forwarded at all (an `egress` other than `deny`;
    /// the drone's `EgressFirewall` chain then decides where they may go).
    let forwarding: Bool
    private let pool: Mutex<OCIAddressPool>

    public var subnet: IPv4Subnet { pool.withLock { $0.subnet } }

    /// In `ownedDirectory` while this drone's egress chains exist (so a drone with `deny`
    /// removes only chains it made, not those of another drone on the subnet).
    static let firewallMarker = "egress-firewall"

    init(subnet: IPv4Subnet, ip: String, ownedDirectory: String, forwarding: Bool = false, logger: Logger) {
        self.ip = ip
        self.logger = logger
        self.ownedDirectory = ownedDirectory
        self.forwarding = forwarding
        pool = Mutex(OCIAddressPool(subnet: subnet))
    }

    /// Checks that `ip` is there and the subnet has room, and sets up the egress policy:
    /// with `deny` nothing from a backend is forwarded; otherwise the host must forward
    /// (`net.ipv4.ip_forward`) and the drone's iptables chains let backends out (masqueraded)
    /// to what the policy allows.
    static func make(subnet: IPv4Subnet, ownedDirectory: String, egress: EgressPolicy = .denyAll, logger: Logger) async throws(RuntimeError) -> OCINetworkNamespaces {
        guard subnet.prefixLength <= 30 else {
            throw RuntimeError(.invalidSpec, "[agent.oci] subnet \(subnet) is too small; give at least a /30 (each backend takes two addresses).")
        }
        let ip = try OCIRuntimeBinary.executablePath("ip", what: "iproute2's ip (for [agent.oci] network = \"namespace\", the default)", package: "iproute2")
        do { try PrivateFiles.directory(ownedDirectory) } catch {
            throw RuntimeError(.unavailable, "Cannot create \(ownedDirectory) for the OCI runtime's network namespaces.", underlying: error)
        }
        let placement = EgressFirewall.Placement.namespaces(subnet: subnet, interfacePrefix: OCIAddressPool.namePrefix)
        let marker = "\(ownedDirectory)/\(firewallMarker)"
        if egress == .denyAll {
            if FileManager.default.fileExists(atPath: marker), let firewall = try? EgressFirewall.make(logger: logger) {
                await firewall.remove(placement: placement)
                unlink(marker)
            }
        } else {
            let forwarding = BoundedFile.generatedText("/proc/sys/net/ipv4/ip_forward")?.trimmingCharacters(in: .whitespacesAndNewlines)
            guard forwarding == "1" else {
                throw RuntimeError(.unavailable, "[agent.oci] egress \(egress) needs the host to forward packets: set net.ipv4.ip_forward = 1 (sysctl -w net.ipv4.ip_forward=1, and in /etc/sysctl.d/), or use egress = \"deny\".")
            }
            let fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            if fd >= 0 { close(fd) }
            try await EgressFirewall.make(logger: logger).apply(egress, placement: placement)
        }
        return OCINetworkNamespaces(subnet: subnet, ip: ip, ownedDirectory: ownedDirectory, forwarding: egress != .denyAll, logger: logger)
    }

    /// Backends found after a restart keep their addresses; namespaces this drone made that
    /// no backend has (a start cut short by a crash) are removed. Namespaces of the subnet
    /// that another drone made are left alone (their addresses are skipped when taken).
    func adopt(_ networks: [OCIBackendNetwork]) async {
        let kept = Set(networks.map(\.namespace))
        pool.withLock { pool in
            for network in networks {
                if let address = IPv4Subnet.parse(network.address) { pool.claim(backendAddress: address) }
            }
        }
        // The egress policy may have changed while the drone was down: running backends
        // follow the current one.
        for network in networks {
            do { try Self.setForwarding(from: network.namespace, forwarding) } catch {
                logger.warning("oci.network_forwarding_failed", metadata: ["plane.netns": "\(network.namespace)", "error": "\(error.message)"])
            }
        }
        let owned = (try? FileManager.default.contentsOfDirectory(atPath: ownedDirectory)) ?? []
        for name in owned.sorted() where !kept.contains(name) {
            guard OCIAddressPool.backendAddress(ofName: name) != nil else { continue }
            logger.notice("oci.network_orphan_removed", metadata: ["plane.netns": "\(name)"])
            await delete(name)
        }
    }

    /// Makes a namespace with its link and addresses for a new backend. An address whose
    /// namespace exists already (made by someone else, or left by a removal that failed) is
    /// skipped and stays taken: what this drone did not make is never deleted here.
    func create(for backend: BackendID) async throws(RuntimeError) -> OCIBackendNetwork {
        while true {
            guard let pair = pool.withLock({ $0.allocate() }) else {
                throw RuntimeError(.unavailable, "The OCI runtime's subnet \(subnet) has no free address for backend \(backend); give [agent.oci] subnet more room.")
            }
            let network = OCIBackendNetwork(namespace: pair.name, hostAddress: IPv4Subnet.format(pair.hostAddress),
                                            address: IPv4Subnet.format(pair.backendAddress))
            if FileManager.default.fileExists(atPath: network.path) {
                logger.notice("oci.network_name_taken", metadata: ["plane.netns": "\(network.namespace)", "plane.address": "\(network.address)"])
                continue
            }
            // The namespace is this drone's only once its own `netns add` made it: another
            // drone may have made it since the check above.
            let outcome: AddOutcome
            do {
                outcome = try await add(network.namespace)
            } catch {
                pool.withLock { $0.release(backendAddress: pair.backendAddress) }
                throw error
            }
            switch outcome {
            case .added: break
            case .taken:
                logger.notice("oci.network_name_taken", metadata: ["plane.netns": "\(network.namespace)", "plane.address": "\(network.address)"])
                continue
            }
            do {
                try await configure(network)
                return network
            } catch {
                await delete(network.namespace)
                pool.withLock { $0.release(backendAddress: pair.backendAddress) }
                throw RuntimeError(.unavailable, "Cannot make the network namespace of backend \(backend) (\(network.namespace), \(network.address)): \(error.message) Namespace networking needs root (CAP_NET_ADMIN).", cause: error.cause)
            }
        }
    }

    enum AddOutcome { case added, taken }

    /// `ip netns add`, then the ownership mark; `.taken` when the namespace exists already.
    func add(_ name: String) async throws(RuntimeError) -> AddOutcome {
        let completion = try await ProcessSpawner.run(ip, ["netns", "add", name])
        guard completion.succeeded else {
            let detail = completion.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
            if detail.contains("File exists") { return .taken }
            throw RuntimeError(.unavailable, "ip netns add \(name) ended with \(completion.statusDescription): \(detail) Namespace networking needs root (CAP_NET_ADMIN).")
        }
        let marker = open("\(ownedDirectory)/\(name)", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        if marker >= 0 { close(marker) } else {
            logger.warning("oci.network_mark_failed", metadata: ["plane.netns": "\(name)", "error": "\(String(cString: strerror(errno)))"])
        }
        return .added
    }

    /// Links and addresses of a namespace `add` made.
    func configure(_ network: OCIBackendNetwork) async throws(RuntimeError) {
        let name = network.namespace
        let outside = """
            link add \(name) type veth peer name eth0 netns \(name)
            addr add \(network.hostAddress)/31 dev \(name)
            link set \(name) up

            """
        let inside = """
            link set lo up
            addr add \(network.address)/31 dev eth0
            link set eth0 up
            route add default via \(network.hostAddress) dev eth0

            """
        for (arguments, batch) in [(["-batch", "-"], outside), (["-netns", name, "-batch", "-"], inside)] {
            let completion = try await ProcessSpawner.run(ip, arguments, input: batch)
            guard completion.succeeded else {
                let detail = completion.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
                throw RuntimeError(.unavailable, "ip \(arguments.joined(separator: " ")) ended with \(completion.statusDescription): \(detail)")
            }
            if arguments.first == "-batch" { try Self.setForwarding(from: name, forwarding) }
        }
    }

    /// With `egress = "deny"` packets that come in on a backend's link are never forwarded
    /// (whatever the host's `ip_forward`), so a backend reaches the drone's own addresses and
    /// nothing beyond: not other backends, not other hosts. Otherwise they are, and the
    /// drone's `EgressFirewall` chain drops what the policy does not allow (and always
    /// traffic between backends).
    static func setForwarding(from interface: String, _ enabled: Bool) throws(RuntimeError) {
        let path = "/proc/sys/net/ipv4/conf/\(interface)/forwarding"
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RuntimeError(.unavailable, "Cannot open \(path): \(String(cString: strerror(errno))).") }
        defer { close(fd) }
        guard write(fd, enabled ? "1\n" : "0\n", 2) == 2 else { throw RuntimeError(.unavailable, "Cannot write \(path): \(String(cString: strerror(errno))).") }
    }

    /// Removes a backend's link and namespace and frees its address.
    func remove(_ network: OCIBackendNetwork) async {
        await delete(network.namespace)
        if let address = IPv4Subnet.parse(network.address) {
            pool.withLock { $0.release(backendAddress: address) }
        }
    }

    /// Deletes the link and the namespace of that name, whichever exist.
    func delete(_ name: String) async {
        let batch = "link delete \(name)\nnetns delete \(name)\n"
        guard let completion = try? await ProcessSpawner.run(ip, ["-force", "-batch", "-"], input: batch) else { return }
        // What is gone already is no failure.
        let problems = completion.standardError.split(separator: "\n").filter { line in
            !line.contains("Cannot find device") && !line.contains("No such file or directory") && !line.hasPrefix("Command failed")
        }
        if !problems.isEmpty {
            logger.warning("oci.network_remove_failed", metadata: ["plane.netns": "\(name)", "error": "\(problems.joined(separator: "; "))"])
        } else {
            unlink("\(ownedDirectory)/\(name)")
        }
    }

    /// The backend's `/etc/hosts`: localhost and its own name at its address.
    static func hostsFile(address: String, hostname: String) -> String {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\(address)\t\(hostname)\n"
    }

    /// The backend's `/etc/resolv.conf`: the configured name servers, or the host's file
    /// without loopback name servers (a namespace has its own loopback, where none listens).
    static func resolvConf(host: String?, nameservers: [String]?) -> String {
        if let nameservers {
            return nameservers.map { "nameserver \($0)\n" }.joined()
        }
        let lines = (host ?? "").split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.first == "nameserver", words.count > 1 else { return true }
            let server = words[1]
            return !(server.hasPrefix("127.") || server == "::1" || server.hasPrefix("0:0:0:0:0:0:0:1"))
        }
        var text = lines.joined(separator: "\n")
        if !text.isEmpty, !text.hasSuffix("\n") { text += "\n" }
        return text
    }

    /// Whether the backend address is taken (for tests).
    func isAllocated(_ address: String) -> Bool {
        guard let value = IPv4Subnet.parse(address) else { return false }
        return pool.withLock { $0.isAllocated(backendAddress: value) }
    }
}
