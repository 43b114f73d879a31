import ContainerRuntime
import CZlib
import CZstd
import Foundation
import ImageBuilder
@testable import PlaneACME
import PlaneController
import PlaneCore
@testable import PlaneDNS
import PlaneTestSupport
import RuntimePluginProtocol

/// The seed corpus: real inputs of every target, made with the project's own writers
/// (`plane-fuzz seed <directory> [golden fixtures]`; the files are kept in
/// `Tests/FuzzCorpus/<target>/`). Each file starts with the steering bytes its target reads.
public enum FuzzSeeds {
    /// Writes every seed into `directory/<target>/seed-N`; returns how many.
    public static func write(into directory: String, goldenFixtures: String? = nil) -> Int {
        var count = 0
        for (target, inputs) in all(goldenFixtures: goldenFixtures) {
            let folder = "\(directory)/\(target)"
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for (index, input) in inputs.enumerated() {
                if FileManager.default.createFile(atPath: "\(folder)/seed-\(index)", contents: Data(input)) { count += 1 }
            }
        }
        return count
    }

    static func all(goldenFixtures: String?) -> [(String, [[UInt8]])] {
        [
            ("http-request", httpRequests),
            ("http-response", httpResponses),
            ("dns-message", dnsMessages),
            ("dns-responder", dnsMessages.flatMap { [[0] + $0, [1] + $0] }),
            ("dns-stream", dnsStreams),
            ("wire-json", wireMessages(goldenFixtures)),
            ("http-spawn", httpSpawnBodies),
            ("nats-protocol", natsStreams),
            ("tar-layer", tarLayers),
            ("oci-image", ociImages),
            ("registry-answer", registryAnswers),
            ("plugin-frame", pluginStreams),
            ("config-toml", configFiles),
            ("acme", acmeResponses),
            ("docker-stream", dockerStreams),
            ("proxy-exchange", proxyExchanges),
        ]
    }

    static func text(_ prefix: [UInt8], _ string: String) -> [UInt8] { prefix + Array(string.utf8) }

    static let httpRequests: [[UInt8]] = [
        text([40, 40, 40, 0x33], "GET /a?b=c HTTP/1.1\r\nHost: abc.plane.test\r\nCookie: _plane_auth=token\r\n\r\n"),
        text([3, 7, 11, 0x21], "POST /up HTTP/1.1\r\nHost: abc.plane.test:8443\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"
             + "GET / HTTP/1.1\r\nHost: x.plane.test\r\nConnection: close\r\n\r\n"),
        text([64, 1, 9, 0x92], "PUT /c HTTP/1.1\r\nHost: abc.plane.test\r\nTransfer-Encoding: gzip, chunked\r\nTE: trailers\r\n\r\n"
             + "5;ext=1\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n"),
        text([64, 64, 64, 0x11], "GET /ws HTTP/1.1\r\nHost: abc.plane.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n\u{81}\u{80}"),
        text([5, 5, 5, 0x44], "GET /_plane_backend=abc/x?q HTTP/1.0\r\nX-Forwarded-For: 10.0.0.1\r\nAuthorization: Bearer token\r\n\r\n"),
        text([64, 2, 64, 0x00], "GET http://abc.plane.test/abs HTTP/1.1\r\nHost: abc.plane.test\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: abc.plane.test\r\n\r\n"
             + "GET /_plane_auth?token=t&redirect=/r HTTP/1.1\r\nHost: abc.plane.test\r\n\r\n"),
    ]

    /// `proxy-exchange` inputs: a script (step kind in the low three bits, amount above;
    /// never 0, the separator), NUL, the client's bytes, NUL, the backends' bytes.
    static let proxyExchanges: [[UInt8]] = {
        let client = 0, backend = 1, backendCloses = 2, clientCloses = 3, time = 4, writability = 5, failConnects = 6, routes = 7
        func input(_ steps: [(Int, Int)], _ fromClient: String, _ fromBackend: String) -> [UInt8] {
            steps.map { UInt8($0.1 << 3 | $0.0) } + [0] + Array(fromClient.utf8) + [0] + Array(fromBackend.utf8)
        }
        let get = "GET /x HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n"
        return [
            input([(client, 31), (backend, 31), (client, 31), (backend, 31)], get + get, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                  + "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            input([(client, 3), (client, 3), (client, 31), (backend, 1), (backend, 2), (time, 9), (backend, 31), (clientCloses, 1), (backend, 31)],
                  "POST /up HTTP/1.1\r\nHost: foobar.plane.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" + get,
                  "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil the end"),
            input([(client, 31), (backend, 31), (client, 2), (backend, 1), (backendCloses, 1), (client, 1), (backendCloses, 0)],
                  "GET /ws HTTP/1.1\r\nHost: foobar.plane.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\u{81}\u{80}abcd",
                  "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\u{81}\u{2}hi"),
            input([(client, 31), (time, 2), (routes, 4), (backend, 31), (client, 31), (time, 31), (routes, 1)],
                  "GET /x HTTP/1.1\r\nHost: starting.plane.test\r\nAuthorization: Bearer secret\r\n\r\n"
                  + "GET /x HTTP/1.1\r\nHost: starting.plane.test\r\nAuthorization: Bearer secret\r\n\r\n",
                  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            input([(writability, 2), (client, 31), (backend, 31), (backend, 31), (writability, 0), (writability, 1), (client, 31), (writability, 3), (time, 31)],
                  get + "PUT /big HTTP/1.1\r\nHost: foobar.plane.test\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n",
                  "HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n" + String(repeating: "z", count: 900)),
            input([(failConnects, 1), (client, 31), (failConnects, 0), (client, 31), (routes, 2), (backend, 31), (client, 31), (routes, 3)],
                  get + get + "GET /_plane_backend=foobar/p HTTP/1.1\r\nHost: plane.test\r\n\r\n",
                  "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            input([(client, 5), (time, 7), (client, 31), (time, 31)], "GET /slow HTTP/1.1\r\nHost: foo", ""),
        ]
    }()

    static let httpResponses: [[UInt8]] = [
        text([64, 64, 64, 0x00], "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\n\r\nok"),
        text([3, 5, 7, 0x80], "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n"),
        text([64, 64, 64, 0x40], "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
        text([10, 10, 10, 0x20], "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"),
        text([64, 64, 64, 0x00], "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\u{81}\u{2}hi"),
    ]

    /// Queries as DNS over TCP frames them, several to a stream, read whole or in pieces.
    static var dnsStreams: [[UInt8]] {
        let framed = dnsMessages.map { [UInt8($0.count >> 8), UInt8($0.count & 0xFF)] + $0 }
        return [[255, 255, 255] + framed.prefix(4).joined(), [3, 7, 1] + framed.suffix(5).joined(), [0, 0, 0] + framed[0] + [0, 40, 1, 2]]
    }

    static var dnsMessages: [[UInt8]] {
        var messages: [[UInt8]] = []
        for (name, type) in [("abc.plane.test", DNSRecordType.a), ("_acme-challenge.plane.test", .txt), ("plane.test", .soa), ("plane.test", .ns),
                             ("six.plane.test", .aaaa), ("big.plane.test", .txt), ("deep.plane.test", .a), ("nope.plane.test", .any), ("other.org", .a)] {
            var header = DNSHeader(id: 0x1234)
            header.recursionDesired = true
            var edns = EDNS(udpPayloadSize: 4096)
            edns.dnssecOK = true
            for withEDNS in [false, true] {
                let query = DNSMessage(header: header, questions: [DNSQuestion(name: try! DNSName(name), type: type)], edns: withEDNS ? edns : nil)
                messages.append(try! DNSMessageWriter.serialize(query))
            }
        }
        var answer = DNSHeader(id: 7)
        answer.isResponse = true
        let owner = try! DNSName("x.plane.test")
        let soa = DNSStartOfAuthority(primaryNameServer: try! DNSName("ns.plane.test"), responsibleMailbox: try! DNSName("admin.plane.test"),
                                      serial: 9, refresh: 1, retry: 2, expire: 3, minimum: 4)
        messages.append(try! DNSMessageWriter.serialize(DNSMessage(header: answer, questions: [DNSQuestion(name: owner, type: .any)],
            answers: [DNSResourceRecord(name: owner, ttl: 60, data: .a(IPv4Address(12, 12, 12, 12))), DNSResourceRecord(name: owner, ttl: 60, data: .text("hello"))],
            authorities: [DNSResourceRecord(name: try! DNSName("plane.test"), ttl: 5, data: .soa(soa))])))
        return messages
    }

    static func wireMessages(_ golden: String?) -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        let names = WireFuzzTargets.decoders.map(\.name)
        if let golden {
            for file in ((try? FileManager.default.contentsOfDirectory(atPath: golden)) ?? []).sorted() {
                guard let type = file.split(separator: ".").first, let index = names.firstIndex(of: String(type)),
                      let data = FileManager.default.contents(atPath: "\(golden)/\(file)") else { continue }
                seeds.append([UInt8(index)] + [UInt8](data))
            }
        }
        let encoder = WireEncoder()
        let time = try! Timestamp(rfc3339: "2026-12-05T10:00:00.123456789Z")
        func add<T: Encodable>(_ name: String, _ value: T) {
            guard let index = names.firstIndex(of: name), let bytes = try? encoder.encode(value) else { return }
            seeds.append([UInt8(index)] + bytes)
        }
        add("BackendRecord", BackendRecord(backendID: "abc", cluster: "plane.test", drone: "drone-1", state: .ready, time: time))
        add("LockRecord", LockRecord(backendID: "abc", drone: "drone-1", bearerToken: "t", confirmed: true, created: time))
        add("DroneLogMessages", [DroneLogMessage(backendID: "abc", kind: .stdout, text: "hello")])
        add("BackendLogHistoryRequest", BackendLogHistoryRequest(backendID: "abc", lines: 10))
        add("Bool", true)
        add("NullReply", NullReply())
        add("DroneLeaseRecord", DroneLeaseRecord(drone: "drone-1", cluster: "plane.test", epoch: 2, revoked: true, leaseHardMilliseconds: 20_000, renewed: time))
        let limits = ResourceLimits(cpuPeriod: 1, cpuPeriodPercent: 50, cpuTimeLimit: 60, memoryLimitBytes: 64 << 20)
        let executable = DockerExecutableConfig(image: "plane-test-server:dev", env: ["A": "b"], credentials: .usernamePassword(username: "u", password: "p"),
                                                resourceLimits: limits, volumeMounts: [VolumeMount(type: "bind", source: "/data", target: "/data")])
        add("SpawnRequest", SpawnRequest(cluster: "plane.test", droneID: "drone-1", maxIdleSeconds: 30, backendID: "abc", metadata: ["k": "v"], executable: executable,
                                         bearerToken: "token"))
        add("ScheduleRequest", ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 30, executable: executable))
        // Mixed fleets (issue 14).
        let readiness = try? ReadinessCheck(path: "/healthz", timeoutSeconds: 20)
        add("ScheduleRequest", ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 30, executable: executable, runtimeClass: "sandbox", pool: "eu",
                                               runtimeOptions: JSONObject([("pids_limit", .integer(64))]), readiness: readiness, maxLifetimeSeconds: 600))
        add("SpawnRequest", SpawnRequest(cluster: "plane.test", droneID: "drone-1", maxIdleSeconds: 30, backendID: "abc", executable: executable, runtimeClass: "sandbox",
                                         runtimeOptions: JSONObject([("nofile", .integer(100))]), readiness: readiness, maxLifetimeSeconds: 60))
        add("DroneStatusMessage", DroneStatusMessage(droneID: "drone-1", cluster: "plane.test", droneVersion: "0.4", runningBackends: 2, runtime: "oci",
                                                     runtimeClasses: ["sandbox"], pool: "eu", capabilities: ["stats"],
                                                     optionsSchema: .object(JSONObject([("type", .string("object"))])),
                                                     capacity: DroneCapacity(memoryBytes: 1 << 30, memoryFreeBytes: 1 << 29, cpus: 2, backendSlots: 10, backendSlotsFree: 9)))
        add("ScheduleResponse", ScheduleResponse.noDroneAvailable(reason: "no ready drone has runtime class 'gpu'"))
        // Warm pools and access tokens (issue 15).
        add("WarmPoolDefinition", WarmPoolDefinition(cluster: "plane.test", name: "editor", size: 2, executable: executable, runtimeClass: "sandbox",
                                                     runtimeOptions: JSONObject([("pids_limit", .integer(64))]), readiness: readiness))
        if let token = try? BackendAccessTokenMessage(cluster: "plane.test", backendID: "abc", token: "abc.0123456789abcdefghijABCDEFGHIJkl") {
            add("BackendAccessTokenMessage", token)
        }
        return seeds
    }

    static let httpSpawnBodies: [[UInt8]] = [
        Array("{}".utf8), Array("".utf8),
        Array(#"{"lock":"doc-1","require_bearer_token":true,"port":8080,"env":{"A":"b"},"grace_period_seconds":120,"volume_mounts":[{"Type":"tmpfs","Target":"/t"}]}"#.utf8),
        Array(#"{"runtime_class":"sandbox","pool":"eu","runtime_options":{"pids_limit":64},"readiness":{"path":"/healthz","timeout_secs":9},"max_lifetime_secs":60}"#.utf8),
        Array(#"{"key":"doc-42","spawn_config":{"service":"fuzz","env":{"A":"x"},"max_idle_secs":120,"memory_limit_bytes":268435456},"user":"ada"}"#.utf8),
        Array(#"{"key":"nb","spawn_config":{"image":"img:1","runtime_class":"sandbox","readiness":{"path":"/"},"max_lifetime_secs":60}}"#.utf8),
    ]

    static let natsStreams: [[UInt8]] = [
        text([7, 13], "INFO {\"server_id\":\"x\",\"version\":\"2.9.10\",\"proto\":1,\"headers\":true,\"max_payload\":1048576,\"jetstream\":true}\r\n"
             + "PING\r\n+OK\r\nMSG cluster.plane.test.schedule 1 _INBOX.a.1 5\r\nhello\r\n"
             + "HMSG _INBOX.x.2 2 23 25\r\nNATS/1.0 503\r\nA: b\r\n\r\nhi\r\n"
             + "MSG a.b 3 0\r\n\r\n-ERR 'Authorization Violation'\r\nPONG\r\n"),
        text([1, 200], "MSG $JS.ACK.backend_status.c.1.5.9.1700000000000000000.0 4 _INBOX.r 11\r\n{\"a\":[1,2]}\r\n"
             + "HMSG sub 5 37 37\r\nNATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\n\r\n\r\n"),
        text([9, 31], "INFO {\"server_id\":\"a\",\"connect_urls\":[\"10.0.0.1:4222\",\"nats-b:4222\",\"[::1]:4223\"]}\r\n"
             + "MSG _INBOX.d 6 $JS.ACK.s.c.1.18446744073709551615.1.0.0 1\r\nx\r\n"
             + "INFO {\"server_id\":\"a\",\"connect_urls\":[\"10.0.0.2:4222\"],\"ldm\":true}\r\n"),
    ]

    static var tarLayers: [[UInt8]] {
        var tar = TarWriter()
        try? tar.append(path: "usr/", kind: .directory, mode: 0o755)
        try? tar.append(path: "usr/bin/tool", kind: .file(Array("#!/bin/sh\n".utf8)), mode: 0o4755)
        try? tar.append(path: "bin", kind: .symlink("usr/bin"), mode: 0o777)
        try? tar.append(path: "usr/bin/alias", kind: .hardlink("usr/bin/tool"), mode: 0o755)
        try? tar.append(path: "etc/.wh.removed", kind: .file([]), mode: 0o644)
        try? tar.append(path: "var/.wh..wh..opq", kind: .file([]), mode: 0o644)
        let plain = tar.finish()
        var crafted = CraftedTar()
        crafted.pax([("path", "a/long/path/from/pax"), ("uid", "1000"), ("gid", "1000"), ("SCHILY.xattr.user.note", "hi")])
        crafted.entry("short", .file, data: Array("pax file".utf8))
        crafted.entry("fifo", .fifo)
        crafted.entry("dev/null", .characterDevice, deviceMajor: 1, deviceMinor: 3)
        let pax = crafted.finish()
        return [[0] + plain, [0x10] + plain, [1] + gzip(plain), [2] + zstd(plain), [0] + pax, [0x13] + pax]
    }

    static func gzip(_ bytes: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        guard deflateInit2_(&stream, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return [] }
        defer { deflateEnd(&stream) }
        var input = bytes
        var output = [UInt8](repeating: 0, count: bytes.count + 1024)
        let produced: Int = input.withUnsafeMutableBufferPointer { inputBuffer in
            output.withUnsafeMutableBufferPointer { outputBuffer in
                stream.next_in = inputBuffer.baseAddress
                stream.avail_in = UInt32(inputBuffer.count)
                stream.next_out = outputBuffer.baseAddress
                stream.avail_out = UInt32(outputBuffer.count)
                _ = deflate(&stream, Z_FINISH)
                return outputBuffer.count - Int(stream.avail_out)
            }
        }
        return Array(output.prefix(produced))
    }

    static func zstd(_ bytes: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: ZSTD_compressBound(bytes.count))
        let size = ZSTD_compress(&output, output.count, bytes, bytes.count, 3)
        return ZSTD_isError(size) == 0 ? Array(output.prefix(size)) : []
    }

    static var ociImages: [[UInt8]] {
        let index = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":500,"platform":{"architecture":"amd64","os":"linux"}}]}"#
        let manifest = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":700},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":1234}]}"#
        let config = #"{"architecture":"amd64","os":"linux","config":{"User":"app:staff","Env":["PATH=/usr/bin","A=b"],"Entrypoint":["/app"],"Cmd":["--serve"],"WorkingDir":"/srv"}}"#
        let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\n"
        let group = "root:x:0:\nstaff:x:50:app\nextra:x:1001:app,other\n"
        var seeds: [[UInt8]] = []
        for document in [index, manifest, config] {
            let users: String = "\u{0}" + passwd + "\u{0}" + group + "\u{0}"
            seeds.append(Array(document.utf8))
            seeds.append(Array((document + users).utf8))
            seeds.append(Array((document + users + "1000:50").utf8))
        }
        return seeds
    }

    static let registryAnswers: [[UInt8]] = [
        Array(("Bearer realm=\"https://auth.example/token\",service=\"registry\",scope=\"repository:a/b:pull\"\u{0}"
               + #"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"# + "\u{0}127.0.0.1:5000/team/app:1.2@sha256:"
               + String(repeating: "a", count: 64)).utf8),
        Array("Basic realm=\"x\"\u{0}not json\u{0}oci-layout:/var/lib/images/app:latest".utf8),
    ]

    static var pluginStreams: [[UInt8]] {
        let spec = BackendSpec(backendID: "abc", droneID: "drone-1", image: "img", env: ["A": "b"], port: 8080, network: .host(address: "127.0.0.1"),
                               limits: ResourceLimitsSpec(memoryBytes: 64 << 20, cpuPeriodMicroseconds: 100_000, cpuQuotaMicroseconds: 50_000, cpuTimeLimitSeconds: 60, pidsLimit: 100),
                               mounts: [MountSpec(kind: .tmpfs, source: "", target: "/t")])
        let time = try! Timestamp(rfc3339: "2026-12-05T10:00:00Z")
        let messages: [PluginMessage] = [
            .result(id: 0, .object(JSONObject([("protocol_version", .integer(1)), ("name", .string("process")), ("version", .string("1.0")),
                                               ("capabilities", .object(JSONObject([("network_modes", .array([.string("host")]))]))), ("calls", .array([.string("start")]))]))),
            .result(id: 1, PluginWire.json(RuntimeHandle(backendID: "abc", runtime: "process", runtimeID: "x", address: BackendAddress(host: "127.0.0.1", port: 8080)))),
            .result(id: 2, PluginWire.json(RuntimeStatus.exited(code: 3))),
            .item(id: 3, PluginWire.json(RuntimeEvent(backendID: "abc", kind: .exited(code: 0), time: time))),
            .item(id: 4, PluginWire.json(LogLine(stream: .stderr, text: "oops", time: time))),
            .result(id: 5, PluginWire.json(ResourceSample(cpuPercent: 12.5, memoryBytes: 1 << 20, memoryLimitBytes: 1 << 30, time: time))),
            .call(id: 6, method: "start", params: .object(JSONObject([("spec", PluginWire.json(spec))]))),
            .failure(id: 7, PluginFailure(code: "image_unavailable", message: "no such image", cause: "404")),
            .end(id: 8),
        ]
        let frames = messages.flatMap { PluginFrame.encode(JSONWriter.write($0.json)) }
        return [[7, 200] + frames, [255, 255] + frames]
    }

    static let configFiles: [[UInt8]] = [
        Array(("[nats]\nhosts = [\"nats://127.0.0.1:4222\"]\nauth = { token = \"t\" }\n\n[scheduler]\ndrone_timeout_secs = 5\n\n[dns]\nport = 5353\nsoa_email = \"admin@plane.test\"\n"
               + "zones = [\"plane.test\"]\nmax_records = 1000\n\n[http]\ncluster = \"plane.test\"\nservices.hello = \"plane-test-server:dev\"\n\n[limits]\nmax_message_bytes = 65536\n"
               + "\u{0}DNS__PORT=53\nLIMITS__MAX_JSON_DEPTH=16\n").utf8),
        Array(("cluster_domain = \"plane.test\"\nstate_dir = \"/tmp/plane-fuzz-state\"\n\n[nats]\nhosts = [\"127.0.0.1\"]\n\n[agent]\nip = \"127.0.0.1\"\nruntime = \"oci\"\n"
               + "port_range = \"20000-20999\"\nmax_log_bytes_per_minute = 100000\nruntime_classes = [\"sandbox\"]\npool = \"eu\"\nmemory_bytes = 1073741824\ncpus = 2\nmax_backends = 50\n\n[agent.oci]\nnetwork = \"namespace\"\nsubnet = \"10.213.0.0/16\"\nmax_layers = 20\n"
               + "insecure_registries = [\"127.0.0.1:5000\"]\n\n[proxy]\nhttps_port = 8443\nmax_header_count = 50\n\n[metrics]\nport = 9100\n\n[limits]\nmax_env_bytes = 1024\n"
               + "\u{0}AGENT__PORT_RANGE=30000-30010\n").utf8),
    ]

    static var acmeResponses: [[UInt8]] {
        let documents = [
            #"{"newNonce":"https://ca.example/nonce","newAccount":"https://ca.example/acct","newOrder":"https://ca.example/order","meta":{"termsOfService":"https://ca.example/tos","externalAccountRequired":false}}"#,
            #"{"status":"pending","expires":"2026-12-06T00:00:00Z","identifiers":[{"type":"dns","value":"*.plane.test"}],"authorizations":["https://ca.example/authz/1"],"finalize":"https://ca.example/finalize/1"}"#,
            #"{"status":"pending","identifier":{"type":"dns","value":"plane.test"},"wildcard":true,"challenges":[{"type":"dns-01","url":"https://ca.example/chall/1","status":"pending","token":"abc_-123"}]}"#,
            #"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce","status":400}"#,
            #"{"drone":"drone-1","expiresMs":1790000000000}"#,
            "Wed, 21 Oct 2026 07:28:00 GMT", "120",
        ]
        var seeds = documents.map { Array($0.utf8) }
        let directory = NSTemporaryDirectory() + "plane-fuzz-seed-ca-\(getpid())"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if let authority = try? LocalCertificateAuthority.openOrCreate(in: directory),
           let bundle = try? authority.issue(names: ["*.plane.test", "plane.test"], to: CertificateFiles(keyPath: "\(directory)/key.pem", certificatePath: "\(directory)/chain.pem")) {
            seeds.append(Array(("{}\u{0}" + bundle.keyPEM + "\u{0}" + bundle.chainPEM).utf8))
        }
        try? FileManager.default.removeItem(atPath: directory)
        return seeds
    }

    static var dockerStreams: [[UInt8]] {
        func frame(_ stream: UInt8, _ text: String) -> [UInt8] {
            let bytes = Array(text.utf8)
            return [stream, 0, 0, 0, UInt8(bytes.count >> 24), UInt8(bytes.count >> 16 & 0xFF), UInt8(bytes.count >> 8 & 0xFF), UInt8(bytes.count & 0xFF)] + bytes
        }
        let logs = frame(1, "2026-12-03T05:00:00.000000100Z first\n") + frame(2, "2026-12-03T05:00:00.000000100Z oops\n")
            + frame(1, "2026-12-03T05:00:01Z long ") + frame(1, "2026-12-03T05:00:02Z line\nunfinished")
        let events = #"{"status":"die","id":"abc","Actor":{"Attributes":{"exitCode":"3","name":"plane-b1"}},"timeNano":1700000000123456789}"# + "\n"
            + #"{"status":"oom","Actor":{"Attributes":{"name":"plane-b2"}},"timeNano":1700000000000000000}"# + "\n"
        let stats = #"{"cpu_stats":{"cpu_usage":{"total_usage":300},"system_cpu_usage":2000,"online_cpus":2},"precpu_stats":{"cpu_usage":{"total_usage":100},"system_cpu_usage":1000},"memory_stats":{"usage":1000,"limit":4000,"stats":{"cache":200}}}"#
        return [[5, 9, 1] + logs, [64, 64, 0] + frame(1, "plain\n"), [30, 30, 0] + Array(events.utf8), [64, 64, 0] + Array(stats.utf8)]
    }
}
