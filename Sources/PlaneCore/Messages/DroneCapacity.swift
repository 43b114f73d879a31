/// Extension (issue 14): how much room a drone has, in its status message. Memory and slots
/// are reservations: what the operator gave the drone (`[agent] memory_bytes`,
/// `max_backends`) less what its live backends asked for, so the numbers do not move with
/// what the backends happen to use. Every field is omitted when unknown.
public struct DroneCapacity: Sendable, Hashable, Codable {
    /// Memory the drone offers to backends.
    public var memoryBytes: UInt64?
    /// `memoryBytes` less the memory limits of its live backends.
    public var memoryFreeBytes: UInt64?
    /// CPUs the drone offers to backends.
    public var cpus: Double?
    /// How many backends the drone runs at most.
    public var backendSlots: UInt32?
    /// `backendSlots` less its live backends.
    public var backendSlotsFree: UInt32?

    public init(memoryBytes: UInt64? = nil, memoryFreeBytes: UInt64? = nil, cpus: Double? = nil, backendSlots: UInt32? = nil, backendSlotsFree: UInt32? = nil) {
        self.memoryBytes = memoryBytes
        self.memoryFreeBytes = memoryFreeBytes
        self.cpus = cpus
        self.backendSlots = backendSlots
        self.backendSlotsFree = backendSlotsFree
    }

    enum CodingKeys: String, CodingKey {
        case memoryBytes = "memory_bytes"
        case memoryFreeBytes = "memory_free_bytes"
        case cpus
        case backendSlots = "backend_slots"
        case backendSlotsFree = "backend_slots_free"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        memoryBytes = try c.decodeIfPresent(UInt64.self, forKey: .memoryBytes)
        memoryFreeBytes = try c.decodeIfPresent(UInt64.self, forKey: .memoryFreeBytes)
        cpus = try c.decodeIfPresent(Double.self, forKey: .cpus)
        if let cpus, !(cpus.isFinite && cpus >= 0 && cpus <= 1_000_000) {
            throw DecodingError.dataCorruptedError(forKey: .cpus, in: c, debugDescription: "cpus must be a number from 0 to 1000000")
        }
        backendSlots = try c.decodeIfPresent(UInt32.self, forKey: .backendSlots)
        backendSlotsFree = try c.decodeIfPresent(UInt32.self, forKey: .backendSlotsFree)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(memoryBytes, forKey: .memoryBytes)
        try c.encodeIfPresent(memoryFreeBytes, forKey: .memoryFreeBytes)
        try c.encodeIfPresent(cpus, forKey: .cpus)
        try c.encodeIfPresent(backendSlots, forKey: .backendSlots)
        try c.encodeIfPresent(backendSlotsFree, forKey: .backendSlotsFree)
    }
}
