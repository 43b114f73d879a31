/// The scheduler's reply to a `ScheduleRequest` (spec §3.2), externally tagged:
/// `{"Scheduled":{...}}`, `"NoDroneAvailable"`, or our additions `{"Error":{...}}` and
/// `{"NoDroneAvailable":{"reason":"..."}}`.
public enum ScheduleResponse: Sendable, Hashable, Codable {
    case scheduled(ScheduledBackend)
    /// `reason` (extension, issue 14) names what no drone had. It is encoded only when set:
    /// the scheduler sets it only for requests that use issue 14's fields
    /// (`ScheduleRequest.usesFleetExtensions`), whose senders decode the object form; a
    /// v0.3.10 client gets the bare string it knows.
    case noDroneAvailable(reason: String?)
    /// Extension: the request was refused (it did not decode, or carried an invalid id or
    /// cluster). v0.3.10 clients fail to decode it, which is the intended effect: they
    /// report an error instead of believing a backend was scheduled.
    case error(ScheduleError)

    /// `NoDroneAvailable` without a reason (v0.3.10's form).
    public static var noDroneAvailable: ScheduleResponse { .noDroneAvailable(reason: nil) }

    enum Tag: String, CodingKey {
        case scheduled = "Scheduled"
        case noDroneAvailable = "NoDroneAvailable"
        case error = "Error"
    }

    public init(from decoder: any Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let tag = try? single.decode(String.self) {
            guard tag == Tag.noDroneAvailable.rawValue else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "unknown ScheduleResponse variant '\(tag)'"))
            }
            self = .noDroneAvailable
            return
        }
        let c = try decoder.container(keyedBy: Tag.self)
        if c.contains(.noDroneAvailable) {
            struct Body: Decodable { var reason: String? }
            let body = try c.decodeIfPresent(Body.self, forKey: .noDroneAvailable)
            self = .noDroneAvailable(reason: body?.reason)
        } else if c.contains(.scheduled) {
            self = .scheduled(try c.decode(ScheduledBackend.self, forKey: .scheduled))
        } else if c.contains(.error) {
            self = .error(try c.decode(ScheduleError.self, forKey: .error))
        } else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "expected \"NoDroneAvailable\", {\"Scheduled\":...} or {\"Error\":...}"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .scheduled(let backend):
            var c = encoder.container(keyedBy: Tag.self)
            try c.encode(backend, forKey: .scheduled)
        case .noDroneAvailable(let reason?):
            var c = encoder.container(keyedBy: Tag.self)
            var body = c.nestedContainer(keyedBy: AnyCodingKey.self, forKey: .noDroneAvailable)
            try body.encode(reason, forKey: AnyCodingKey(stringValue: "reason"))
        case .noDroneAvailable(nil):
            var c = encoder.singleValueContainer()
            try c.encode(Tag.noDroneAvailable.rawValue)
        case .error(let error):
            var c = encoder.container(keyedBy: Tag.self)
            try c.encode(error, forKey: .error)
        }
    }
}

/// The `Scheduled` variant's body.
public struct ScheduledBackend: Sendable, Hashable, Codable {
    public var drone: DroneID
    public var backendID: BackendID
    /// Omitted from JSON (not null) when there is none.
    public var bearerToken: String?
    /// Always written: `false` when a live backend already held the request's lock and is
    /// returned instead. A reply without it (a v0.3.10 controller) decodes as `true`.
    public var spawned: Bool
    /// Extension: for a backend that holds a lock, the lock's fencing token (see
    /// `SpawnRequest.fencingToken`). Omitted when nil.
    public var fencingToken: UInt64?

    public init(drone: DroneID, backendID: BackendID, bearerToken: String? = nil, spawned: Bool = true, fencingToken: UInt64? = nil) {
        self.fencingToken = fencingToken
        self.drone = drone
        self.backendID = backendID
        self.bearerToken = bearerToken
        self.spawned = spawned
    }

    enum CodingKeys: String, CodingKey {
        case drone
        case backendID = "backend_id"
        case bearerToken = "bearer_token"
        case spawned
        case fencingToken = "fencing_token"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        drone = try c.decode(DroneID.self, forKey: .drone)
        backendID = try c.decode(BackendID.self, forKey: .backendID)
        bearerToken = try c.decodeIfPresent(String.self, forKey: .bearerToken)
        spawned = try c.decode(Bool.self, forKey: .spawned, default: true)
        fencingToken = try c.decodeIfPresent(UInt64.self, forKey: .fencingToken)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(drone, forKey: .drone)
        try c.encode(backendID, forKey: .backendID)
        try c.encodeIfPresent(bearerToken, forKey: .bearerToken)
        try c.encode(spawned, forKey: .spawned)
        try c.encodeIfPresent(fencingToken, forKey: .fencingToken)
    }
}

/// The `Error` variant's body (our extension): a code a program can branch on and a message
/// for people.
public struct ScheduleError: Sendable, Hashable, Codable {
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public init(_ error: PlaneCoreError) {
        self.init(code: error.code.rawValue, message: error.description)
    }

    enum CodingKeys: String, CodingKey { case code, message }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        message = try c.decode(String.self, forKey: .message)
        code = try c.decodeIfPresent(String.self, forKey: .code) ?? "error"
    }
}
