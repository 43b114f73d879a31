import NATS
import PlaneCore
import PlaneTestSupport
import Testing
@testable import PlaneMessaging

@Suite(.timeLimit(.minutes(2)))
struct PlaneMessengerTests {
    func messenger(_ server: NATSServerProcess) async throws -> PlaneMessenger {
        PlaneMessenger(client: try await server.connectedClient())
    }

    @Test func typedRequestReplyOnTheScheduleSubject() async throws {
        try await withNATSServer { server in
            let controller = try await messenger(server), client = try await messenger(server)
            let requests = try await controller.subscribe(PlaneSubjects.scheduleAll, queue: "plane-scheduler")
            let responder = Task {
                for await delivery in requests {
                    switch delivery.message {
                    case .success(let request):
                        let id = request.backendID ?? BackendID.random()
                        try await delivery.respond(.scheduled(ScheduledBackend(drone: "drone-1", backendID: id)))
                    case .failure(let error):
                        try await delivery.respond(.error(ScheduleError(error)))
                    }
                }
            }
            let request = ScheduleRequest(cluster: "plane.test", backendID: "doc-1", maxIdleSeconds: 30, executable: DockerExecutableConfig(image: "img:tag"))
            let response = try await client.request(PlaneSubjects.schedule("plane.test"), request)
            #expect(response == .scheduled(ScheduledBackend(drone: "drone-1", backendID: "doc-1", spawned: true)))

            // A raw v0.3.10-style client sending bad input gets an error reply, and the
            // responder keeps running.
            let bad = try await client.client.request("cluster.plane_test.schedule", payload: Array(#"{"cluster":"plane.test","backend_id":"UPPER","max_idle_secs":30,"metadata":{},"executable":{"image":"i","env":{}}}"#.utf8))
            #expect(bad.string.hasPrefix(#"{"Error":{"code":"invalid_backend_id","message":"Backend id 'UPPER' is invalid"#))
            let garbage = try await client.client.request("cluster.plane_test.schedule", payload: Array("not json".utf8))
            #expect(garbage.string.contains("malformed_json"))

            // A request published without a reply subject is dropped, not fatal.
            try await client.client.publish("cluster.plane_test.schedule", payload: try WireEncoder().encode(request))
            try await client.client.flush()
            let again = try await client.request(PlaneSubjects.schedule("plane.test"), request)
            guard case .scheduled = again else { Issue.record("responder stopped answering"); return }
            responder.cancel()
            await controller.client.close(); await client.client.close()
        }
    }

    @Test func replyThatDoesNotDecodeIsATypedError() async throws {
        try await withNATSServer { server in
            let m = try await messenger(server)
            let sub = try await m.client.subscribe(to: "drone.d1.spawn")
            let task = Task { for await msg in sub { if let r = msg.replyTo { try await m.client.publish(r, payload: Array("\"yes\"".utf8)) } } }
            let spawn = SpawnRequest(cluster: "plane.test", droneID: "d1", maxIdleSeconds: 10, backendID: "b1", executable: DockerExecutableConfig(image: "i"))
            let error = try await #require(throws: PlaneCoreError.self) { try await m.request(PlaneSubjects.spawn("d1"), spawn) }
            #expect(error.code == .invalidMessage)
            task.cancel()
            await m.client.close()
        }
    }

    @Test func backendStateHistoryKeepsNanosecondTimes() async throws {
        try await withNATSServer { server in
            let m = try await messenger(server)
            let info = try await m.ensureBackendStatusStream()
            #expect(info.config.subjects == ["backend.*.status"])
            #expect(info.config.maxMessagesPerSubject == 100)
            let times = ["2023-02-18T17:03:14.518207339Z", "2023-02-18T17:03:15.002113873Z", "2023-02-18T17:03:16Z"]
            let states: [BackendState] = [.loading, .starting, .ready]
            for (time, state) in zip(times, states) {
                try await m.publishBackendState(BackendStateMessage(cluster: "plane.test", state: state, backend: "b1", time: try Timestamp(rfc3339: time)))
            }
            try await m.publishBackendState(BackendStateMessage(cluster: "plane.test", state: .loading, backend: "other", time: .now()))
            // A raw, undecodable entry is delivered as a failure.
            _ = try await m.jetStream.publish("backend.b1.status", payload: Array("garbage".utf8))
            try await m.publishBackendState(BackendStateMessage(cluster: "plane.test", state: .swept, backend: "b1", time: try Timestamp(rfc3339: "2023-02-18T17:05:00.1Z")))
            let history = try await m.backendStateHistory(of: "b1")
            #expect(history.initialPending == 5)
            var seen: [StoredBackendState] = []
            for try await entry in history {
                seen.append(entry)
                if entry.pending == 0 { break }
            }
            history.stop()
            let decoded = seen.compactMap { try? $0.message.get() }
            #expect(seen.count == 5)
            #expect(decoded.map(\.state) == [.loading, .starting, .ready, .swept])
            #expect(decoded.prefix(3).map(\.time.rfc3339) == times)
            #expect(decoded.last?.time.rfc3339 == "2023-02-18T17:05:00.100Z")
            guard case .failure(let error) = seen[3].message else { Issue.record("expected the garbage entry to fail"); return }
            #expect(error.code == .malformedJSON)
            // The stored bytes are exactly the serde form.
            let raw = try await m.jetStream.lastMessage(stream: "backend_status", subject: "backend.b1.status")
            #expect(raw?.string == #"{"cluster":"plane.test","state":"Swept","backend":"b1","time":"2023-02-18T17:05:00.100Z"}"#)
            await m.client.close()
        }
    }
}
