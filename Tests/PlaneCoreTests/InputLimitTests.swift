import Testing
@testable import PlaneCore

/// Bounds on what a peer's JSON and spawns can make a process hold: each refusal names its
/// configuration key, and nothing within the bounds is refused.
struct InputLimitTests {
    func parse(_ text: String, _ limits: JSONLimits) throws(PlaneCoreError) -> JSONValue {
        try JSONParser.parse(Array(text.utf8), limits: limits)
    }

    @Test func jsonLimitsNameTheirKeys() throws {
        let limits = JSONLimits(maxBytes: 64, maxDepth: 3, maxStringBytes: 8)
        #expect(try parse(#"{"a":[["12345678"]]}"#, limits) != .null)
        let cases: [(String, String)] = [
            (String(repeating: " ", count: 60) + "[1, 2]", JSONLimits.maxBytesKey),
            (#"{"a":[[["x"]]]}"#, JSONLimits.maxDepthKey),
            (#"["123456789"]"#, JSONLimits.maxStringBytesKey),
            (#"["\u0041\u0041\u0041\u0041\u0041\u0041\u0041\u0041\u0041"]"#, JSONLimits.maxStringBytesKey),
            (#"[123456789]"#, JSONLimits.maxStringBytesKey),
            (#"{"123456789":1}"#, JSONLimits.maxStringBytesKey),
        ]
        for (text, key) in cases {
            let error = try #require(throws: PlaneCoreError.self, "\(text)") { try parse(text, limits) }
            #expect(error.code == .limitExceeded && error.limit == key && error.message.contains(key), "\(text)")
        }
        // A process's own store reads what any limit would refuse.
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: PlaneCoreError.self) { try parse(deep, .wire) }
        #expect(try JSONParser.parse(deep) != .null)
        #expect(try WireDecoder(limits: limits).decode([String].self, from: Array(#"["a"]"#.utf8)) == ["a"])
    }

    /// An object with many members decodes in linear time (it took quadratic time: every
    /// key was looked up by a scan of all members, so one 1 MiB message of short keys kept
    /// a thread busy for minutes).
    @Test func largeObjectsDecodeInLinearTime() throws {
        let count = 200_000
        var text = "{"
        for index in 0..<count { text += (index == 0 ? "" : ",") + "\"k\(index)\":\"v\"" }
        text += ",\"k7\":\"last\"}"
        let started = ContinuousClock.now
        let map = try WireDecoder(limits: .stored).decode([String: String].self, from: Array(text.utf8))
        #expect(map.count == count && map["k7"] == "last" && map["k199999"] == "v")
        #expect(ContinuousClock.now - started < .seconds(30), "quadratic lookups take minutes here")
        var object = JSONObject((0..<40).map { ("k\($0)", JSONValue.string("v")) })
        object["k3"] = .string("changed")
        object["new"] = .bool(true)
        object["k0"] = nil
        #expect(object["k3"] == .string("changed") && object["new"] == .bool(true) && object["k0"] == nil && object["k39"] == .string("v"))
        #expect(object.count == 40 && object.keys.first == "k1")
    }

    @Test func spawnLimitsAndEnvironmentNames() throws {
        let limits = SpawnLimits(maxEnvBytes: 10, maxMetadataBytes: 6)
        try limits.check(image: "img", env: ["ABCDE": "12345"], metadata: ["key": "val"])
        func refusal(_ env: [String: String], _ metadata: [String: String] = [:], image: String = "img") -> PlaneCoreError? {
            do { try limits.check(image: image, env: env, metadata: metadata); return nil } catch { return error }
        }
        #expect(refusal(["ABCDE": "123456"])?.limit == SpawnLimits.maxEnvBytesKey)
        #expect(refusal([:], ["key": "valu"])?.limit == SpawnLimits.maxMetadataBytesKey)
        for name in ["", "A=B", "A\u{0}"] {
            #expect(refusal([name: "x"])?.code == .invalidMessage, "\(name)")
        }
        #expect(refusal(["A": "x\u{0}y"])?.field == "executable.env")
        #expect(refusal([:], image: String(repeating: "i", count: 4097))?.field == "executable.image")
        // The wire's resource limits are checked with the rest.
        let executable = DockerExecutableConfig(image: "img", resourceLimits: ResourceLimits(cpuPeriod: 3600))
        #expect(throws: PlaneCoreError.self) { try SpawnLimits().check(executable, metadata: [:]) }
    }

    @Test func configurationReadsEveryKeyWithItsRange() {
        let table = ConfigTable([("max_message_bytes", .integer(2048)), ("max_json_depth", .integer(9)), ("max_json_string_bytes", .integer(300)),
                                 ("max_env_bytes", .integer(5)), ("max_metadata_bytes", .unparsed("7", variable: "PLANE_LIMITS__MAX_METADATA_BYTES"))])
        let reader = ConfigReader(table, path: "limits")
        let limits = InputLimits.read(reader)
        #expect(reader.problems.isEmpty)
        #expect(limits.json == JSONLimits(maxBytes: 2048, maxDepth: 9, maxStringBytes: 300))
        #expect(limits.spawn == SpawnLimits(maxEnvBytes: 5, maxMetadataBytes: 7))
        let bad = ConfigReader(ConfigTable([("max_json_depth", .integer(1000)), ("max_message_bytes", .integer(-1))]), path: "limits")
        _ = InputLimits.read(bad)
        #expect(bad.problems.sorted() == ["limits.max_json_depth: 1000 is out of range; use 8...128",
                                          "limits.max_message_bytes: -1 is out of range; use 1024...67108864"])
    }

    @Test func countersCountAndThrottleLogging() {
        let counters = LimitCounters()
        let start = ContinuousClock.now
        // The first hit is logged, the next within 10 s are only counted, then one line
        // stands for all of them.
        #expect(counters.record("dns.max_records", now: start) == 1)
        #expect(counters.record("dns.max_records", now: start + .seconds(1)) == nil)
        #expect(counters.record("dns.max_records", now: start + .seconds(9)) == nil)
        #expect(counters.record("dns.max_records", now: start + .seconds(11)) == 3)
        #expect(counters.record("limits.max_message_bytes", now: start + .seconds(11)) == 1)
        #expect(counters.count("dns.max_records") == 4)
        #expect(counters.snapshot == ["dns.max_records": 4, "limits.max_message_bytes": 1])
    }

    @Test func countersCountByKey() {
        let counters = LimitCounters()
        counters.record("dns.max_records")
        counters.record("dns.max_records")
        counters.record("limits.max_message_bytes")
        #expect(counters.count("dns.max_records") == 2)
        #expect(counters.snapshot == ["dns.max_records": 2, "limits.max_message_bytes": 1])
    }
}
