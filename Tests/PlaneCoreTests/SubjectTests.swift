import Testing
@testable import PlaneCore

struct SubjectTests {
    let cluster: ClusterName = "plane.test"
    let drone: DroneID = "b2cdfb71-b2a8-4d89-9dcd-bb7a4cbbddd4"
    let backend: BackendID = "my-backend"

    @Test func everySubjectOfTheSpec() {
        #expect(PlaneSubjects.schedule(cluster).subject == "cluster.plane_test.schedule")
        #expect(PlaneSubjects.scheduleAll.pattern == "cluster.*.schedule")
        #expect(PlaneSubjects.spawn(drone).subject == "drone.b2cdfb71-b2a8-4d89-9dcd-bb7a4cbbddd4.spawn")
        #expect(PlaneSubjects.droneStatus(drone).subject == "drone.b2cdfb71-b2a8-4d89-9dcd-bb7a4cbbddd4.status")
        #expect(PlaneSubjects.droneStatusAll.pattern == "drone.*.status")
        #expect(PlaneSubjects.droneRegister.subject == "drone.register")
        #expect(PlaneSubjects.drain(cluster, drone).subject == "cluster.plane_test.drone.b2cdfb71-b2a8-4d89-9dcd-bb7a4cbbddd4.drain")
        #expect(PlaneSubjects.terminate(cluster, backend).subject == "cluster.plane_test.backend.my-backend.terminate")
        #expect(PlaneSubjects.terminateAll(cluster).pattern == "cluster.plane_test.backend.*.terminate")
        #expect(PlaneSubjects.updateBackendState(cluster, backend).subject == "cluster.plane_test.backend.my-backend.status")
        #expect(PlaneSubjects.updateBackendStateAll.pattern == "cluster.*.backend.*.status")
        #expect(PlaneSubjects.backendStatus(backend).subject == "backend.my-backend.status")
        #expect(PlaneSubjects.backendStatusAll.pattern == "backend.*.status")
        #expect(PlaneSubjects.dns(cluster, .a).subject == "cluster.plane_test.dns.A")
        #expect(PlaneSubjects.dns(cluster, .txt).subject == "cluster.plane_test.dns.TXT")
        #expect(PlaneSubjects.dnsAll.pattern == "cluster.*.dns.*")
        #expect(PlaneSubjects.acmeSetDnsRecord.subject == "acme.set_dns_record")
        #expect(PlaneSubjects.backendLog(backend).subject == "backend.my-backend.log")
        #expect(PlaneSubjects.backendStats(backend).subject == "backend.my-backend.stats")
        #expect(PlaneSubjects.controllerLogs.subject == "logs.controller")
        #expect(PlaneSubjects.droneLogs(drone).subject == "logs.drone.b2cdfb71-b2a8-4d89-9dcd-bb7a4cbbddd4")
    }

    @Test func tokensOfAConcreteSubject() {
        let subject = PlaneSubjects.terminate(cluster, backend).subject
        #expect(SubjectPattern<TerminationRequest, NullReply>.token(3, of: subject) == "my-backend")
        #expect(SubjectPattern<TerminationRequest, NullReply>.token(9, of: subject) == nil)
    }
}
