import Testing
@testable import PlaneCore

/// Issue 14's additions to the wire: optional, omitted when empty (so v0.3.10 peers see the
/// messages they know), strict about what they accept.
struct FleetWireTests {
    func encode(_ value: some Encodable) throws -> String { String(decoding: try WireEncoder().encode(value), as: UTF8.self) }
    func decode<T: Decodable>(_ type: T.Type, _ text: String) throws(PlaneCoreError) -> T { try WireDecoder().decode(type, from: Array(text.utf8)) }

    @Test func aStatusWithoutAdditionsIsV0310s() throws {
        let status = DroneStatusMessage(droneID: "d1", cluster: "plane.test", droneVersion: "0.3.10", runningBackends: 2)
        #expect(try encode(status) == #"{"drone_id":"d1","cluster":"plane.test","drone_version":"0.3.10","ready":true,"state":"Ready","running_backends":2}"#)
    }

    @Test func aStatusWithAdditionsRoundTrips() throws {
        let schema = JSONValue.object(JSONObject([("type", .string("object"))]))
        let status = DroneStatusMessage(droneID: "d1", cluster: "plane.test", droneVersion: "0.4.0", runningBackends: 1, runtime: "oci",
                                        runtimeClasses: ["sandbox", "fast"], pool: "west", capabilities: ["network_bridge", "stats"],
                                        optionsSchema: schema,
                                        capacity: DroneCapacity(memoryBytes: 8 << 30, memoryFreeBytes: 6 << 30, cpus: 2.5, backendSlots: 100, backendSlotsFree: 99))
        let text = try encode(status)
        #expect(text.contains(#""runtime":"oci","runtime_classes":["sandbox","fast"],"pool":"west","capabilities":["network_bridge","stats"],"options_schema":{"type":"object"}"#))
        #expect(text.contains(#""capacity":{"memory_bytes":8589934592,"memory_free_bytes":6442450944,"cpus":2.5,"backend_slots":100,"backend_slots_free":99}"#))
        #expect(try decode(DroneStatusMessage.self, text) == status)
    }

    @Test("hostile statuses are refused", arguments: [
        #""runtime_classes":["Bad Class"]"#,
        #""pool":"""#,
        #""runtime_classes":[\#((0..<33).map { "\"c\($0)\"" }.joined(separator: ","))]"#,
        #""capabilities":[\#((0..<33).map { "\"c\($0)\"" }.joined(separator: ","))]"#,
        #""capacity":{"cpus":-1}"#,
        #""capacity":{"memory_free_bytes":-5}"#,
        #""capacity":{"backend_slots_free":4294967296}"#,
    ])
    func hostileStatuses(field: String) {
        let text = #"{"drone_id":"d1","cluster":"plane.test","drone_version":"x",\#(field)}"#
        #expect(throws: PlaneCoreError.self) { try decode(DroneStatusMessage.self, text) }
    }

    @Test func aScheduleRequestCarriesTheAdditionsOnlyWhenSet() throws {
        let plain = ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 30, executable: DockerExecutableConfig(image: "img"))
        let plainText = try encode(plain)
        for key in ["runtime_class", "pool", "runtime_options", "readiness", "max_lifetime_secs"] { #expect(!plainText.contains(key)) }
        let full = ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 30, executable: DockerExecutableConfig(image: "img"), runtimeClass: "sandbox",
                                   pool: "west", runtimeOptions: JSONObject([("pids_limit", .integer(64))]),
                                   readiness: try ReadinessCheck(path: "/healthz", timeoutSeconds: 20), maxLifetimeSeconds: 600)
        let text = try encode(full)
        #expect(text.hasSuffix(#""runtime_class":"sandbox","pool":"west","runtime_options":{"pids_limit":64},"readiness":{"path":"/healthz","timeout_secs":20},"max_lifetime_secs":600}"#))
        #expect(try decode(ScheduleRequest.self, text) == full)
        let spawn = SpawnRequest(cluster: "plane.test", droneID: "d1", maxIdleSeconds: 30, backendID: "b1", executable: DockerExecutableConfig(image: "img"),
                                 runtimeClass: "sandbox", pool: "west", runtimeOptions: full.runtimeOptions, readiness: full.readiness, maxLifetimeSeconds: 600)
        #expect(try decode(SpawnRequest.self, try encode(spawn)) == spawn)
    }

    @Test("invalid additions are refused with the field", arguments: [
        (#""runtime_class":"-x""#, "runtime_class"),
        (#""pool":"WEST""#, "pool"),
        (#""runtime_options":[1]"#, "runtime_options"),
        (#""readiness":{"path":"healthz"}"#, "readiness"),
        (#""readiness":{"path":"/a b"}"#, "readiness"),
        (#""readiness":{"path":"/ok","timeout_secs":0}"#, "readiness"),
        (#""readiness":{"path":"/ok","timeout_secs":99999999}"#, "readiness"),
        (#""max_lifetime_secs":0"#, "max_lifetime_secs"),
        (#""max_lifetime_secs":-3"#, "max_lifetime_secs"),
    ])
    func invalidAdditions(field: String, name: String) throws {
        let text = #"{"cluster":"plane.test","max_idle_secs":30,"metadata":{},"executable":{"image":"img","env":{}},\#(field)}"#
        let error = try #require(throws: PlaneCoreError.self) { try decode(ScheduleRequest.self, text) }
        #expect(error.field?.hasPrefix(name) == true, "\(error)")
    }

    @Test func noDroneAvailableKeepsV0310sFormWithoutAReason() throws {
        #expect(try encode(ScheduleResponse.noDroneAvailable) == #""NoDroneAvailable""#)
        let reasoned = ScheduleResponse.noDroneAvailable(reason: "no ready drone has runtime class 'gpu'")
        let text = try encode(reasoned)
        #expect(text == #"{"NoDroneAvailable":{"reason":"no ready drone has runtime class 'gpu'"}}"#)
        #expect(try decode(ScheduleResponse.self, text) == reasoned)
        #expect(try decode(ScheduleResponse.self, #"{"NoDroneAvailable":null}"#) == .noDroneAvailable)
        #expect(try decode(ScheduleResponse.self, #""NoDroneAvailable""#) == .noDroneAvailable)
    }

    @Test func fleetLabels() throws {
        for good in ["a", "sandbox", "gpu-a100", "eu.west_1", String(repeating: "a", count: 63)] { _ = try FleetLabel(good) }
        for bad in ["", "-a", ".a", "_a", "A", "a b", "ä", String(repeating: "a", count: 64)] {
            #expect(throws: PlaneCoreError.self) { try FleetLabel(bad) }
        }
    }
}

/// Per-connect access tokens on the wire (issue 15): `{backend}.{32 alphanumerics}`, the
/// backend named in the token is the message's.
struct AccessTokenWireTests {
    @Test func tokensNameTheirBackend() throws {
        let backend: BackendID = "4dea4037-3d2d-4e12-95f9-a2864d9ba8dd"
        let token = "\(backend).ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"
        #expect(BackendAccessTokenMessage.backendID(of: token) == backend)
        let message = try BackendAccessTokenMessage(cluster: "plane.test", backendID: backend, token: token)
        let text = String(decoding: try WireEncoder().encode(message), as: UTF8.self)
        #expect(text == #"{"cluster":"plane.test","backend_id":"4dea4037-3d2d-4e12-95f9-a2864d9ba8dd","token":"\#(token)","revoke":false}"#)
        #expect(try WireDecoder().decode(BackendAccessTokenMessage.self, from: Array(text.utf8)) == message)
        for bad in ["\(backend).short", "\(backend).ABCDEFGHIJKLMNOPQRSTUVWXYZabcde!", "Bad_ID.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef", ""] {
            #expect(BackendAccessTokenMessage.backendID(of: bad) == nil, "\(bad)")
        }
        // Another backend's token is refused.
        #expect(throws: PlaneCoreError.self) { try BackendAccessTokenMessage(cluster: "plane.test", backendID: "other", token: token) }
        let forged = text.replacingOccurrences(of: #""backend_id":"4dea4037-3d2d-4e12-95f9-a2864d9ba8dd""#, with: #""backend_id":"other""#)
        #expect(throws: PlaneCoreError.self) { try WireDecoder().decode(BackendAccessTokenMessage.self, from: Array(forged.utf8)) }
    }

    @Test func warmPoolDefinitionsAndTheWarmPoolFields() throws {
        var executable = DockerExecutableConfig(image: "editor:1")
        executable.resourceLimits.memoryLimitBytes = 268_435_456
        let definition = WarmPoolDefinition(cluster: "plane.test", name: "editor", size: 2, executable: executable, runtimeClass: "sandbox")
        let json = String(decoding: try WireEncoder().encode(definition), as: UTF8.self)
        #expect(json.hasPrefix(#"{"cluster":"plane.test","name":"editor","size":2,"executable":"#) && json.hasSuffix(#","runtime_class":"sandbox"}"#), "\(json)")
        #expect(try WireDecoder().decode(WarmPoolDefinition.self, from: Array(json.utf8)) == definition)
        #expect(definition.key == "plane_test.editor")
        for bad in [json.replacingOccurrences(of: #""size":2"#, with: #""size":65"#), json.replacingOccurrences(of: #""name":"editor""#, with: #""name":"ed.itor""#)] {
            #expect(throws: (any Error).self) { _ = try WireDecoder().decode(WarmPoolDefinition.self, from: Array(bad.utf8)) }
        }
        var spawn = SpawnRequest(cluster: "plane.test", droneID: "d1", maxIdleSeconds: DurationSeconds(60), backendID: "b1", executable: executable, runtimeClass: "sandbox")
        #expect(!definition.matches(spawn))  // names no pool
        spawn.warmPool = "editor"
        #expect(definition.matches(spawn))
        spawn.executable.env["X"] = "1"
        #expect(!definition.matches(spawn))
        // On the wire only when set; a v0.3.10 drone's heartbeat has none.
        let encoded = String(decoding: try WireEncoder().encode(spawn), as: UTF8.self)
        #expect(encoded.hasSuffix(#","warm_pool":"editor"}"#))
        var heartbeat = DroneStatusMessage(droneID: "d1", cluster: "plane.test", droneVersion: "1")
        #expect(!String(decoding: try WireEncoder().encode(heartbeat), as: UTF8.self).contains("warm_pools"))
        heartbeat.warmPools = ["editor": 2]
        let beat = try WireEncoder().encode(heartbeat)
        #expect(String(decoding: beat, as: UTF8.self).contains(#""warm_pools":{"editor":2}"#))
        #expect(try WireDecoder().decode(DroneStatusMessage.self, from: beat).warmPools == ["editor": 2])
    }
}
