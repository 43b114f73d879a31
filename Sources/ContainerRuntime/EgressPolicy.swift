import PlaneCore

/// Where a drone's backends may open connections beyond the drone's host (the runtimes'
/// `egress` key): everywhere, nowhere, or only to the listed networks. Traffic between
/// backends is never allowed, whatever the policy; the drone's own host is always
/// reachable (the drone reaches its backends over the same link).
public enum EgressPolicy: Sendable, Hashable, CustomStringConvertible {
    case allowAll
    case denyAll
    /// Only these IPv4 networks (at most `maximumNetworks`).
    case allowList([IPv4Subnet])

    /// The most networks an allow list may name (one firewall rule each).
    public static let maximumNetworks = 256

    /// What the `egress` key takes, for error messages.
    public static let settingForm = "\"allow\", \"deny\", or a list of IPv4 networks such as [\"10.0.0.0/8\", \"203.0.113.7/32\"]"

    /// Reads the `egress` key: `"allow"`, `"deny"`, or a list of networks in CIDR notation.
    public init(setting value: JSONValue) throws(RuntimeError) {
        if let text = value.stringValue {
            switch text {
            case "allow": self = .allowAll
            case "deny": self = .denyAll
            default: throw RuntimeError(.invalidSpec, "egress '\(text.prefix(64))' is not a policy; use \(Self.settingForm).")
            }
            return
        }
        guard let items = value.arrayValue else { throw RuntimeError(.invalidSpec, "egress must be \(Self.settingForm).") }
        guard !items.isEmpty, items.count <= Self.maximumNetworks else {
            throw RuntimeError(.invalidSpec, "egress lists 1 to \(Self.maximumNetworks) networks, got \(items.count); use \"deny\" for none.")
        }
        var networks: [IPv4Subnet] = []
        for item in items {
            guard let text = item.stringValue else { throw RuntimeError(.invalidSpec, "egress must be \(Self.settingForm).") }
            let network: IPv4Subnet
            do { network = try IPv4Subnet(text) } catch { throw RuntimeError(.invalidSpec, "egress: \(error.message)") }
            if !networks.contains(network) { networks.append(network) }
        }
        self = .allowList(networks)
    }

    /// The setting as it is written in the configuration.
    public var setting: JSONValue {
        switch self {
        case .allowAll: .string("allow")
        case .denyAll: .string("deny")
        case .allowList(let networks): .array(networks.map { .string($0.description) })
        }
    }

    public var description: String {
        switch self {
        case .allowAll: "allow"
        case .denyAll: "deny"
        case .allowList(let networks): networks.map(\.description).joined(separator: ",")
        }
    }
}
