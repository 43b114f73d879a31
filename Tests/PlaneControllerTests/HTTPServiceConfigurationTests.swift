import PlaneCore
import Testing
@testable import PlaneController

/// What a caller of the HTTP API may add to a service: env names and mount sources, only
/// as the service's configuration allows.
struct HTTPServiceConfigurationTests {
    let open = HTTPServiceConfiguration(image: "img", env: ["MODE": "shared"], allowedEnv: ["USER_NAME"], allowedMountSources: ["/srv/data", "scratch"])

    @Test func envIsTheServicesPlusAllowedNames() throws {
        #expect(try open.environment(from: ["USER_NAME": "ada"], service: "nb") == ["MODE": "shared", "USER_NAME": "ada"])
        for refused in [["LD_PRELOAD": "/x.so"], ["MODE": "private"]] {
            #expect(throws: ControllerError.self) { try open.environment(from: refused, service: "nb") }
        }
        let plain: HTTPServiceConfiguration = "img"
        #expect(try plain.environment(from: [:], service: "p") == [:])
        #expect(throws: ControllerError.self) { try plain.environment(from: ["A": "b"], service: "p") }
        let any = HTTPServiceConfiguration(image: "img", allowedEnv: ["*"])
        #expect(try any.environment(from: ["A": "b"], service: "a") == ["A": "b"])
    }

    @Test func mountsOnlyOfAllowedSources() throws {
        let allowed = [VolumeMount(type: "bind", source: "/srv/data", target: "/data"), VolumeMount(type: "bind", source: "/srv/data/u1/", target: "/u"),
                       VolumeMount(type: "bind", source: "/srv//data/./u2", target: "/u2", readOnly: true), VolumeMount(type: "volume", source: "scratch", target: "/s")]
        try open.check(allowed, service: "nb")
        let refused = [
            VolumeMount(type: "bind", source: "/", target: "/host"),
            VolumeMount(type: "bind", source: "/srv/data/../../etc", target: "/etc2"),
            VolumeMount(type: "bind", source: "/srv/database", target: "/db"),
            VolumeMount(type: "bind", source: "srv/data", target: "/rel"),
            VolumeMount(type: "volume", source: "other", target: "/o"),
            VolumeMount(type: "tmpfs", source: "/srv/data", target: "/t"),
            VolumeMount(json: JSONObject([("Type", .string("volume")), ("Source", .string("scratch")), ("Target", .string("/s")),
                                          ("VolumeOptions", .object(JSONObject([("DriverConfig", .object(JSONObject()))])))])),
            VolumeMount(json: JSONObject([("Type", .string("bind")), ("Target", .string("/s"))])),
        ]
        for mount in refused {
            #expect(throws: ControllerError.self, "\(mount.json)") { try open.check([mount], service: "nb") }
        }
        let plain: HTTPServiceConfiguration = "img"
        #expect(throws: ControllerError.self) { try plain.check([allowed[0]], service: "p") }
    }

    @Test func aSpawnBodyBecomesTheServicesRequest() throws {
        let body = try HTTPSpawnRequest.parse(Array(#"{"env":{"USER_NAME":"ada"},"volume_mounts":[{"Type":"volume","Source":"scratch","Target":"/s"}]}"#.utf8))
        let request = try body.scheduleRequest(cluster: "plane.test", service: open, named: "nb")
        #expect(request.executable.image == "img" && request.executable.env == ["MODE": "shared", "USER_NAME": "ada"])
        #expect(request.executable.volumeMounts.count == 1)
        do {
            _ = try body.scheduleRequest(cluster: "plane.test", service: "img", named: "plain")
            Issue.record("a plain service takes no caller env")
        } catch {
            #expect(error.code == .forbidden && error.message.contains("allowed_env"))
        }
    }

    @Test func exposureNeedsAToken() {
        var config = HTTPAPIConfiguration(cluster: "plane.test")
        #expect(config.bindHost == "127.0.0.1" && config.exposureProblem == nil)
        for host in ["0.0.0.0", "10.0.0.1", "::", "example.com", "127.0.0.256", "127.1"] {
            config.bindHost = host
            #expect(config.exposureProblem != nil, "\(host)")
        }
        for host in ["127.0.0.1", "127.9.8.7", "::1", "localhost"] {
            config.bindHost = host
            #expect(config.exposureProblem == nil, "\(host)")
        }
        config.bindHost = "0.0.0.0"
        config.token = String(repeating: "x", count: 16)
        #expect(config.exposureProblem == nil)
        config.token = "short"
        #expect(config.exposureProblem?.contains("at least 16") == true)
    }
}

/// Payloads that name another cluster, backend or drone than their subject.
struct SubjectConsistencyTests {
    let backend = BackendID.random()

    @Test func aPayloadMustNameItsSubjectsCluster() {
        let request = ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 30, executable: DockerExecutableConfig(image: "i"))
        #expect(SubjectConsistency.problem(schedule: request, subject: "cluster.plane_test.schedule") == nil)
        #expect(SubjectConsistency.problem(schedule: request, subject: "cluster.other_test.schedule") != nil)
        let update = UpdateBackendStateMessage(cluster: "plane.test", state: .ready, backend: backend, time: .now(), drone: "d1")
        #expect(SubjectConsistency.problem(update: update, subject: "cluster.plane_test.backend.\(backend).status") == nil)
        #expect(SubjectConsistency.problem(update: update, subject: "cluster.other.backend.\(backend).status") != nil)
        #expect(SubjectConsistency.problem(update: update, subject: "cluster.plane_test.backend.\(BackendID.random()).status") != nil)
        let heartbeat = DroneStatusMessage(droneID: "d1", cluster: "plane.test", droneVersion: "1")
        #expect(SubjectConsistency.problem(heartbeat: heartbeat, subject: "drone.d1.status") == nil)
        #expect(SubjectConsistency.problem(heartbeat: heartbeat, subject: "drone.d2.status") != nil)
        let record = SetDnsRecord(cluster: "plane.test", kind: .a, name: backend.rawValue, value: "127.0.0.1")
        #expect(SubjectConsistency.problem(record: record, subject: "cluster.plane_test.dns.A") == nil)
        #expect(SubjectConsistency.problem(record: record, subject: "cluster.plane_test.dns.TXT") != nil)
        #expect(SubjectConsistency.problem(record: record, subject: "cluster.evil_test.dns.A") != nil)
        #expect(SubjectConsistency.problem(record: record, subject: "cluster") != nil)
    }
}

/// Issue 14 through the HTTP API: the body's runtime class, pool, options, readiness and
/// lifetime, and the service's say over what a caller may choose.
struct HTTPSpawnPlacementTests {
    func body(_ text: String) throws(ControllerError) -> HTTPSpawnRequest { try HTTPSpawnRequest.parse(Array(text.utf8)) }

    @Test func theBodysFieldsAreParsedAndChecked() throws {
        let request = try body(#"{"runtime_class":"sandbox","pool":"west","runtime_options":{"pids_limit":64},"readiness":{"path":"/healthz","timeout_secs":9},"max_lifetime_secs":60}"#)
        #expect(request.runtimeClass == "sandbox" && request.pool == "west" && request.runtimeOptions["pids_limit"] == .integer(64))
        let readiness = try ReadinessCheck(path: "/healthz", timeoutSeconds: 9)
        #expect(request.readiness == readiness && request.maxLifetimeSeconds == 60)
        for bad in [#"{"runtime_class":"Bad"}"#, #"{"pool":7}"#, #"{"runtime_options":"x"}"#, #"{"readiness":{"path":"x"}}"#, #"{"max_lifetime_secs":0}"#] {
            let error = try #require(throws: ControllerError.self) { try body(bad) }
            #expect(error.code == .invalidRequest, "\(bad)")
        }
    }

    @Test func aServicePlacesItsSpawnsAndCallersChooseOnlyWhatItAllows() throws {
        var service = HTTPServiceConfiguration(image: "img")
        service.runtimeClass = "sandbox"
        service.runtimeOptions = JSONObject([("pids_limit", .integer(128))])
        service.memoryLimitBytes = 256 << 20
        service.readiness = try ReadinessCheck(path: "/ready")
        service.maxLifetimeSeconds = 3600
        let plain = try HTTPSpawnRequest().scheduleRequest(cluster: "plane.test", service: service, named: "nb")
        #expect(plain.runtimeClass == "sandbox" && plain.pool == nil && plain.runtimeOptions["pids_limit"] == .integer(128))
        #expect(plain.executable.resourceLimits.memoryLimitBytes == 256 << 20 && plain.readiness?.path == "/ready" && plain.maxLifetimeSeconds == 3600)
        // Nothing else by default.
        for refused in [#"{"runtime_class":"fast"}"#, #"{"pool":"west"}"#, #"{"runtime_options":{"pids_limit":4096}}"#] {
            let error = try #require(throws: ControllerError.self) { try body(refused).scheduleRequest(cluster: "plane.test", service: service, named: "nb") }
            #expect(error.code == .forbidden, "\(refused)")
        }
        // The service's own class may be named; readiness and lifetime are the caller's.
        let same = try body(#"{"runtime_class":"sandbox","max_lifetime_secs":30}"#).scheduleRequest(cluster: "plane.test", service: service, named: "nb")
        #expect(same.runtimeClass == "sandbox" && same.maxLifetimeSeconds == 30)
        service.allowedRuntimeClasses = ["fast"]
        service.allowedPools = ["*"]
        service.allowedRuntimeOptions = ["pids_limit"]
        let chosen = try body(#"{"runtime_class":"fast","pool":"west","runtime_options":{"pids_limit":64}}"#)
            .scheduleRequest(cluster: "plane.test", service: service, named: "nb")
        #expect(chosen.runtimeClass == "fast" && chosen.pool == "west" && chosen.runtimeOptions["pids_limit"] == .integer(64))
        #expect(throws: ControllerError.self) { try body(#"{"runtime_options":{"oci_runtime":"runc"}}"#).scheduleRequest(cluster: "plane.test", service: service, named: "nb") }
    }
}

/// `POST /ctrl/connect`'s body: the key is the lock, a token is always required, the service's
/// policy applies, and a caller may lower its memory limit but not raise it.
struct HTTPConnectRequestTests {
    func parse(_ text: String) throws(ControllerError) -> HTTPConnectRequest { try HTTPConnectRequest.parse(Array(text.utf8)) }

    @Test func aServiceConnectKeepsTheServicesPolicy() throws {
        var service = HTTPServiceConfiguration(image: "editor:3")
        service.memoryLimitBytes = 512 << 20
        let services = ["editor": service]
        let lower = try parse(#"{"key":"doc-1","spawn_config":{"service":"editor","memory_limit_bytes":268435456},"user":"ada"}"#)
            .scheduleRequest(cluster: "plane.test", services: services)
        #expect(lower.lock == "doc-1" && lower.requireBearerToken && lower.executable.image == "editor:3" && lower.metadata["user"] == "ada")
        #expect(lower.executable.resourceLimits.memoryLimitBytes == 256 << 20 && lower.maxIdleSeconds == 300)
        let error = try #require(throws: ControllerError.self) {
            try parse(#"{"key":"doc-1","spawn_config":{"service":"editor","memory_limit_bytes":1073741824}}"#).scheduleRequest(cluster: "plane.test", services: services)
        }
        #expect(error.code == .forbidden)
        #expect(throws: ControllerError.self) { try parse(#"{"key":"doc-1","spawn_config":{"service":"editor","env":{"X":"1"}}}"#).scheduleRequest(cluster: "plane.test", services: services) }
        for bad in [#"{"key":"","spawn_config":{"service":"editor"}}"#, #"{"key":"k","spawn_config":{"image":""}}"#, #"{"key":"k","spawn_config":{"service":"editor","max_idle_secs":0}}"#,
                    #"{"key":"k","spawn_config":{"service":"editor"},"user":"a\u0001b"}"#, #"{"key":"k","spawn_config":{"service":"editor","bogus":1}}"#, "[]"] {
            #expect(throws: ControllerError.self, "\(bad)") { try parse(bad) }
        }
    }
}
