import NATS
import PlaneCore

/// The controller's shared state in JetStream KV: backends (`plane_backends`) and locks
/// (`plane_locks`). Every write that can race is a compare-and-set on the key's revision.
public struct ControllerStore: Sendable {
    public static let backendsBucket = "plane_backends"
    public static let locksBucket = "plane_locks"
    public static let leasesBucket = "plane_leases"

    public let backends: KeyValueBucket
    public let locks: KeyValueBucket
    /// `plane_leases`: drones' leases (`DroneLeases`).
    public let leases: KeyValueBucket

    public static func open(_ js: JetStream, replicas: Int) async throws -> ControllerStore {
        var backends = KeyValueConfiguration(bucket: backendsBucket)
        backends.replicas = replicas
        backends.description = "Plane: current state of every backend"
        var locks = KeyValueConfiguration(bucket: locksBucket)
        locks.replicas = replicas
        locks.description = "Plane: lock name -> the backend holding it"
        var leases = KeyValueConfiguration(bucket: leasesBucket)
        leases.replicas = replicas
        leases.description = "Plane: drone id -> the lease its lock-holding backends run under"
        return ControllerStore(backends: try await js.keyValue(backends), locks: try await js.keyValue(locks), leases: try await js.keyValue(leases))
    }

    public func backend(_ id: BackendID) async throws -> (record: BackendRecord, revision: UInt64)? {
        guard let entry = try await backends.get(id.rawValue) else { return nil }
        return (try WireDecoder().decode(BackendRecord.self, from: entry.value), entry.revision)
    }

    public func lock(_ key: String) async throws -> (record: LockRecord, revision: UInt64)? {
        guard let entry = try await locks.get(key) else { return nil }
        return (try WireDecoder().decode(LockRecord.self, from: entry.value), entry.revision)
    }

    static func encode(_ value: some Encodable) throws -> [UInt8] {
        try WireEncoder().encode(value)
    }
}

extension NATSError {
    /// A compare-and-set lost against another writer.
    var isConflict: Bool { code == .wrongLastSequence }
}
