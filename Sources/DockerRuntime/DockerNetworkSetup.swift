import ContainerRuntime
import Logging
import PlaneCore
import ProcessSupervision

extension DockerRuntimeConfiguration.Network {
    /// The `NetworkMode` of a backend container.
    var dockerName: String {
        switch self {
        case .managed(let name, _), .named(let name): name
        case .host: "host"
        }
    }
}

/// Makes sure the network backends join is there before any backend starts: the drone's
/// own isolated bridge network (created when missing, checked when present), or the
/// operator's named network (which must exist).
struct DockerNetworkSetup {
    /// The bridge driver's option that lets containers of one network talk to each other.
    static let interContainerOption = "com.docker.network.bridge.enable_icc"

    let client: DockerEngineClient
    let logger: Logger

    func ensure(_ network: DockerRuntimeConfiguration.Network, egress: EgressPolicy = .allowAll, endpoint: String = "/var/run/docker.sock") async throws(RuntimeError) {
        switch network {
        case .host:
            return
        case .named(let name):
            let response = try await client.call(.GET, "/networks/\(name)")
            switch response.status {
            case 200: return
            case 404:
                throw RuntimeError(.unavailable, "Docker network '\(name)' ([agent.docker] network) does not exist; create it (docker network create \(name)) or remove the key to let the drone use an isolated network of its own.")
            default:
                throw RuntimeError(.unavailable, "Docker could not inspect network '\(name)': \(response.status) \(response.message)")
            }
        case .managed(let name, let subnet):
            // Two drones of one daemon may create it at once: the loser finds it made.
            for _ in 0..<4 {
                let response = try await client.call(.GET, "/networks/\(name)")
                switch response.status {
                case 200:
                    let info = response.json?.objectValue ?? JSONObject()
                    try check(info, name: name, subnet: subnet, egress: egress)
                    try await applyFirewall(egress, network: name, info: info, endpoint: endpoint)
                    return
                case 404:
                    // Created: the next round inspects it (for its bridge's name).
                    do {
                        _ = try await create(name: name, subnet: subnet, egress: egress)
                    } catch {
                        // Another drone creating it at the same moment makes dockerd refuse
                        // ours as overlapping the address pool it has just taken, before its
                        // network can be inspected: if it appears shortly, use it.
                        guard try await appears(name) else { throw error }
                    }
                default:
                    throw RuntimeError(.unavailable, "Docker could not inspect network '\(name)': \(response.status) \(response.message)")
                }
            }
            throw RuntimeError(.unavailable, "Docker network '\(name)' could not be created or found; check the daemon's log.")
        }
    }

    /// Whether network `name` can be inspected within `within` (polled every 100 ms):
    /// dockerd takes a new network's address pool before it stores the network.
    func appears(_ name: String, within: Duration = .seconds(3)) async throws(RuntimeError) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: within)
        while true {
            if try await client.call(.GET, "/networks/\(name)").status == 200 { return true }
            guard clock.now < deadline, !Task.isCancelled else { return false }
            try? await clock.sleep(for: .milliseconds(100))
        }
    }

    /// The Linux bridge of a network Docker describes.
    static func bridgeName(_ info: JSONObject) -> String? {
        if let name = info["Options"]?.objectValue?["com.docker.network.bridge.name"]?.stringValue, !name.isEmpty { return name }
        guard let id = info["Id"]?.stringValue, id.count >= 12 else { return nil }
        return "br-\(id.prefix(12))"
    }

    /// An allow list is held by the drone's chain in `DOCKER-USER` for the network's bridge;
    /// any other policy removes a chain an earlier configuration left (best effort).
    func applyFirewall(_ egress: EgressPolicy, network: String, info: JSONObject, endpoint: String) async throws(RuntimeError) {
        guard let bridge = Self.bridgeName(info), bridge.utf8.count <= 15,
              bridge.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 95 || $0 == 46 }) else {
            if case .allowList = egress {
                throw RuntimeError(.unavailable, "Docker network '\(network)' has no bridge interface this drone can name; an egress allow list needs the drone's own bridge network.")
            }
            return
        }
        let placement = EgressFirewall.Placement.docker(bridge: bridge)
        guard case .allowList = egress else {
            if let firewall = try? EgressFirewall.make(logger: logger) { await firewall.remove(placement: placement) }
            return
        }
        guard endpoint.hasPrefix("/") || endpoint.hasPrefix("unix://") else {
            throw RuntimeError(.invalidSpec, "[agent.docker] egress lists networks, which the drone enforces in the Docker host's packet filter: it must run on that host (connection = { socket = ... }), not reach Docker at \(endpoint).")
        }
        try await EgressFirewall.make(logger: logger).apply(egress, placement: placement)
    }

    /// An existing managed network must isolate its containers; one made by someone else
    /// with inter-container traffic on is refused rather than used.
    func check(_ info: JSONObject, name: String, subnet: String, egress: EgressPolicy = .allowAll) throws(RuntimeError) {
        let driver = info["Driver"]?.stringValue ?? "?"
        let isolating = info["Options"]?.objectValue?[Self.interContainerOption]?.stringValue == "false"
        guard driver == "bridge", isolating else {
            throw RuntimeError(.invalidSpec, "Docker network '\(name)' exists but does not isolate backends (driver \(driver), \(Self.interContainerOption) is not false); remove it (docker network rm \(name)) so the drone creates it, or set [agent.docker] managed_network to another name.")
        }
        let isInternal = info["Internal"]?.boolValue ?? false
        guard isInternal == (egress == .denyAll) else {
            throw RuntimeError(.invalidSpec, "Docker network '\(name)' exists \(isInternal ? "without" : "with") a way out, but [agent.docker] egress is \(egress == .denyAll ? "\"deny\"" : "not \"deny\""); remove it (docker network rm \(name)) so the drone creates it as configured, or set managed_network to another name.")
        }
        let subnets = (info["IPAM"]?.objectValue?["Config"]?.arrayValue ?? []).compactMap { $0.objectValue?["Subnet"]?.stringValue }
        if !subnets.contains(subnet) {
            logger.notice("docker.network_subnet_differs", metadata: ["docker.network": "\(name)", "docker.subnet": "\(subnets.joined(separator: ","))", "docker.configured_subnet": "\(subnet)"])
        }
    }

    /// Creates the managed network; false when someone else created it meanwhile.
    func create(name: String, subnet: String, egress: EgressPolicy = .allowAll) async throws(RuntimeError) -> Bool {
        let body = JSONValue.object(JSONObject([
            ("Name", .string(name)), ("Driver", .string("bridge")), ("CheckDuplicate", .bool(true)), ("Internal", .bool(egress == .denyAll)),
            ("IPAM", .object(JSONObject([("Config", .array([.object(JSONObject([("Subnet", .string(subnet))]))]))]))),
            ("Options", .object(JSONObject([(Self.interContainerOption, .string("false"))]))),
            ("Labels", .object(JSONObject([(DockerRuntime.managedLabel, .string("true"))]))),
        ]))
        let response = try await client.call(.POST, "/networks/create", body: body)
        switch response.status {
        case 201:
            logger.info("docker.network_created", metadata: ["docker.network": "\(name)", "docker.subnet": "\(subnet)"])
            return true
        case 409:
            return false
        default:
            throw RuntimeError(.unavailable, "Docker could not create network '\(name)' on \(subnet): \(response.message). If the subnet overlaps another network, set [agent.docker] subnet to a free one.")
        }
    }
}

/// What a Docker network name may be here: it goes into Engine API paths, so only the
/// characters Docker's own names use.
public enum DockerNetworkName {
    public static func isValid(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 128 else { return false }
        let alphanumeric: (UInt8) -> Bool = { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) }
        return alphanumeric(first) && name.utf8.allSatisfy { alphanumeric($0) || $0 == 95 || $0 == 46 || $0 == 45 }
    }
}
