import CLinux
import Foundation
import PlaneCore

/// How a backend ended (`exit.json`), written by its shim, so the exit is known even when
/// the drone was down at the time.
public struct BackendExitRecord: Codable, Sendable, Hashable {
    /// The exit code, or 128 + the signal when a signal ended it (as a shell reports it).
    public var code: Int32
    /// The signal that ended it, if one did.
    public var signal: Int32?
    /// Whether the kernel's OOM killer ended it (the memory cgroup counted an OOM kill).
    public var outOfMemory: Bool
    /// When the shim saw it end.
    public var time: Timestamp

    enum CodingKeys: String, CodingKey {
        case code, signal
        case outOfMemory = "oom_killed"
        case timeNanoseconds = "time_ns"
    }

    public init(code: Int32, signal: Int32?, outOfMemory: Bool, time: Timestamp) {
        self.code = code
        self.signal = signal
        self.outOfMemory = outOfMemory
        self.time = time
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        code = try container.decode(Int32.self, forKey: .code)
        signal = try container.decodeIfPresent(Int32.self, forKey: .signal)
        outOfMemory = try container.decodeIfPresent(Bool.self, forKey: .outOfMemory) ?? false
        time = Timestamp(nanosecondsSinceEpoch: try container.decode(Int64.self, forKey: .timeNanoseconds))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(code, forKey: .code)
        try container.encodeIfPresent(signal, forKey: .signal)
        try container.encode(outOfMemory, forKey: .outOfMemory)
        try container.encode(time.nanosecondsSinceEpoch, forKey: .timeNanoseconds)
    }

    /// The exit record for a raw wait status (`nil`: the status was lost: 255); an OOM kill
    /// when one of the cgroup counter files counts one.
    public init(waitStatus status: Int32?, outOfMemoryCounterFiles counters: [String]) {
        let outOfMemory = counters.contains { Self.outOfMemoryKills(in: $0) > 0 }
        guard let status else {
            self.init(code: 255, signal: nil, outOfMemory: outOfMemory, time: .now())
            return
        }
        if plane_wifsignaled(status) != 0 {
            let signal = plane_wtermsig(status)
            self.init(code: 128 + signal, signal: signal, outOfMemory: outOfMemory, time: .now())
            return
        }
        self.init(code: plane_wexitstatus(status), signal: nil, outOfMemory: outOfMemory, time: .now())
    }

    /// Writes the record to `path` atomically (a reader never sees half of it).
    public func write(to path: String) throws {
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// The `oom_kill` count in a cgroup `memory.events` or `memory.oom_control` file.
    public static func outOfMemoryKills(in file: String) -> Int {
        guard let text = BoundedFile.generatedText(file, limit: 1 << 16) else { return 0 }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, fields[0] == "oom_kill" { return Int(fields[1]) ?? 0 }
        }
        return 0
    }
}
