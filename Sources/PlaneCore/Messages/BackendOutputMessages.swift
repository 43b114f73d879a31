/// One chunk of a backend's output (subject `backend.{backend_id}.log`, spec §3.14).
public struct DroneLogMessage: Sendable, Hashable, Codable {
    public var backendID: BackendID
    public var kind: DroneLogMessageKind
    public var text: String

    public init(backendID: BackendID, kind: DroneLogMessageKind, text: String) {
        self.backendID = backendID
        self.kind = kind
        self.text = text
    }

    /// A line of output in v0.3.10's form (spec §3.14: Docker's frame with timestamps):
    /// `{RFC 3339 time} {line}\n`.
    public init(backendID: BackendID, kind: DroneLogMessageKind, line: String, time: Timestamp) {
        self.init(backendID: backendID, kind: kind, text: time.rfc3339 + " " + line + "\n")
    }

    /// `text` taken apart: its leading time (when it has v0.3.10's form) and the line
    /// without the time and the trailing newline.
    public var line: (time: Timestamp?, text: String) {
        var body = Substring(text)
        if body.hasSuffix("\n") { body = body.dropLast() }
        if let space = body.firstIndex(of: " "), space > body.startIndex, body[body.startIndex].isNumber,
           let time = try? Timestamp(rfc3339: String(body[..<space])) {
            return (time, String(body[body.index(after: space)...]))
        }
        return (nil, String(body))
    }

    enum CodingKeys: String, CodingKey {
        case backendID = "backend_id"
        case kind, text
    }
}

/// Our addition: asks the drone running a backend for its recent output (subject
/// `backend.{backend_id}.log.history`, reply: a JSON array of `DroneLogMessage`, oldest
/// first). Only the drone running the backend (`Starting` or `Ready`) answers.
public struct BackendLogHistoryRequest: Sendable, Hashable, Codable {
    public var backendID: BackendID
    /// At most this many of the newest lines (the drone caps it at 10,000 and the reply at
    /// 512 KiB).
    public var lines: Int

    public init(backendID: BackendID, lines: Int = 1000) {
        self.backendID = backendID
        self.lines = lines
    }

    enum CodingKeys: String, CodingKey {
        case backendID = "backend_id"
        case lines
    }
}

public enum DroneLogMessageKind: String, Sendable, Hashable, Codable, CaseIterable {
    case stdout = "Stdout"
    case stderr = "Stderr"
}

/// A resource sample of a backend (subject `backend.{backend_id}.stats`, spec §3.15). Both
/// values are percentages on a 0–100 scale. A non-finite value is written as `null` (as
/// serde_json does) and read back as NaN.
public struct BackendStatsMessage: Sendable, Hashable, Codable {
    public var backendID: BackendID
    public var cpuUsePercent: Double
    public var memUsePercent: Double
    /// Seconds since the backend's last request or open connection (0 while one is open),
    /// as the drone's proxy counts it for `max_idle_secs`; nil before it is Ready. Our
    /// addition (`idle_secs`), omitted when nil; the controller's dashboard shows it.
    public var idleSeconds: Double?

    public init(backendID: BackendID, cpuUsePercent: Double, memUsePercent: Double, idleSeconds: Double? = nil) {
        self.backendID = backendID
        self.cpuUsePercent = cpuUsePercent
        self.memUsePercent = memUsePercent
        self.idleSeconds = idleSeconds
    }

    enum CodingKeys: String, CodingKey {
        case backendID = "backend_id"
        case cpuUsePercent = "cpu_use_percent"
        case memUsePercent = "mem_use_percent"
        case idleSeconds = "idle_secs"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        backendID = try c.decode(BackendID.self, forKey: .backendID)
        cpuUsePercent = try c.decodeIfPresent(Double.self, forKey: .cpuUsePercent) ?? .nan
        memUsePercent = try c.decodeIfPresent(Double.self, forKey: .memUsePercent) ?? .nan
        // A peer's number: anything but a finite, non-negative one is no answer.
        idleSeconds = (try? c.decodeIfPresent(Double.self, forKey: .idleSeconds)).flatMap { $0.flatMap { $0.isFinite && $0 >= 0 ? $0 : nil } }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(backendID, forKey: .backendID)
        if cpuUsePercent.isFinite { try c.encode(cpuUsePercent, forKey: .cpuUsePercent) } else { try c.encodeNil(forKey: .cpuUsePercent) }
        if memUsePercent.isFinite { try c.encode(memUsePercent, forKey: .memUsePercent) } else { try c.encodeNil(forKey: .memUsePercent) }
        if let idleSeconds, idleSeconds.isFinite, idleSeconds >= 0 { try c.encode(idleSeconds, forKey: .idleSeconds) }
    }
}

/// A forwarded log event of a controller or drone (subjects `logs.controller`,
/// `logs.drone.{drone_id}`, spec §3.16).
public struct LogMessage: Sendable, Hashable, Codable {
    public var component: Component
    public var target: String
    public var name: String
    public var severity: Severity
    public var time: Timestamp
    /// Event fields; the human message is under `"message"`.
    public var fields: JSONObject

    public init(component: Component, target: String, name: String, severity: Severity, time: Timestamp, fields: JSONObject) {
        self.component = component
        self.target = target
        self.name = name
        self.severity = severity
        self.time = time
        self.fields = fields
    }

    enum CodingKeys: String, CodingKey { case component, target, name, severity, time, fields }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        component = try c.decode(Component.self, forKey: .component)
        target = try c.decode(String.self, forKey: .target)
        name = try c.decode(String.self, forKey: .name)
        severity = try c.decode(Severity.self, forKey: .severity)
        time = try c.decode(Timestamp.self, forKey: .time)
        guard case .object(let object) = try c.decode(JSONValue.self, forKey: .fields) else {
            throw DecodingError.typeMismatch(JSONObject.self, .init(codingPath: c.codingPath + [CodingKeys.fields], debugDescription: "expected an object"))
        }
        fields = object
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(component, forKey: .component)
        try c.encode(target, forKey: .target)
        try c.encode(name, forKey: .name)
        try c.encode(severity, forKey: .severity)
        try c.encode(time, forKey: .time)
        try c.encode(JSONValue.object(fields), forKey: .fields)
    }

    /// Internally tagged with key `type`: `{"type":"Controller"}` or
    /// `{"type":"Drone","drone_id":"..."}`.
    public enum Component: Sendable, Hashable, Codable {
        case controller
        case drone(DroneID)

        enum CodingKeys: String, CodingKey {
            case type
            case droneID = "drone_id"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            switch try c.decode(String.self, forKey: .type) {
            case "Controller": self = .controller
            case "Drone": self = .drone(try c.decode(DroneID.self, forKey: .droneID))
            case let other:
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [CodingKeys.type], debugDescription: "unknown component type '\(other)'"))
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            switch self {
            case .controller:
                try c.encode("Controller", forKey: .type)
            case .drone(let id):
                try c.encode("Drone", forKey: .type)
                try c.encode(id, forKey: .droneID)
            }
        }
    }

    public enum Severity: String, Sendable, Hashable, Codable, CaseIterable {
        case trace = "TRACE", debug = "DEBUG", info = "INFO", warn = "WARN", error = "ERROR"
    }
}
