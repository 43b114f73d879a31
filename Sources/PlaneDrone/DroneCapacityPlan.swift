import Foundation
import PlaneCore

/// The drone's room for backends (issue 14): what the operator offers (`[agent]
/// memory_bytes`, `cpus`, `max_backends`) less what the live backends reserved — a backend
/// reserves its spawn's memory limit (none: nothing) and one slot. Pure: the agent passes the
/// reservations in. The scheduler filters on the capacity heartbeats carry; the drone admits
/// by the same numbers, so two controllers placing at once cannot overfill it.
public struct DroneCapacityPlan: Sendable, Hashable {
    public var memoryBytes: UInt64
    public var cpus: Double
    public var maxBackends: Int

    /// The configured values, the host's where `[agent]` sets none.
    public init(configuration: AgentConfiguration) {
        memoryBytes = configuration.memoryBytes ?? Self.hostMemoryBytes() ?? (1 << 30)
        cpus = configuration.cpus ?? Double(ProcessInfo.processInfo.activeProcessorCount)
        maxBackends = configuration.maxBackends
    }

    init(memoryBytes: UInt64, cpus: Double, maxBackends: Int) {
        self.memoryBytes = memoryBytes
        self.cpus = cpus
        self.maxBackends = maxBackends
    }

    /// What the status message says.
    func capacity(reservedMemory: UInt64, liveBackends: Int) -> DroneCapacity {
        let slots = UInt32(clamping: maxBackends)
        return DroneCapacity(memoryBytes: memoryBytes, memoryFreeBytes: memoryBytes >= reservedMemory ? memoryBytes - reservedMemory : 0, cpus: cpus,
                             backendSlots: slots, backendSlotsFree: UInt32(clamping: max(0, maxBackends - liveBackends)))
    }

    /// Throws when one more backend reserving `memory` does not fit.
    func admit(memory: UInt64, reservedMemory: UInt64, liveBackends: Int) throws(DroneError) {
        if liveBackends >= maxBackends {
            throw DroneError(.invalidSpawn, "The drone runs \(liveBackends) backends, its max_backends; it takes no more until one ends.")
        }
        let (total, overflow) = reservedMemory.addingReportingOverflow(memory)
        if overflow || total > memoryBytes {
            throw DroneError(.invalidSpawn, "The spawn's memory limit (\(memory) bytes) does not fit: \(reservedMemory) of the drone's memory_bytes \(memoryBytes) are reserved by its backends.")
        }
    }

    /// `MemTotal` of /proc/meminfo, in bytes.
    static func hostMemoryBytes() -> UInt64? {
        guard let text = BoundedFile.generatedText("/proc/meminfo") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kib = UInt64(fields[1]) else { return nil }
            let (bytes, overflow) = kib.multipliedReportingOverflow(by: 1024)
            return overflow ? nil : bytes
        }
        return nil
    }
}
