import Foundation
import PlaneCore
import PlaneTestSupport
import Testing

/// `[agent.oci] network = "namespace"` on real runc and crun: each backend in a network
/// namespace of its own, reached at its address, cut off from the drone's loopback and from
/// other backends, kept across a restart, removed with the backend. The runtime runs in
/// `plane-runtime-driver` inside a network namespace this test makes, so no link, address
/// or namespace of the host's is touched.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct OCINetworkNamespaceTests {
    func namespaces(_ driver: RuntimeDriverProcess) async throws -> Set<String> {
        let listed = try await driver.run("/usr/sbin/ip", "netns", "list")
        return Set(listed.output.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
    }

    func get(_ driver: RuntimeDriverProcess, _ address: String, _ path: String) async throws -> String {
        let parts = address.split(separator: ":")
        let answer = try await driver.call(["command": "get", "host": String(parts[0]), "port": Int(parts[1]) ?? 0, "path": path])
        return answer["body"] as? String ?? ""
    }

    @Test(arguments: ["runc", "crun"])
    func backendsGetNamespacesOfTheirOwn(_ binary: String) async throws {
        let driver = try RuntimeDriverProcess()
        defer { driver.end() }
        let state = try TestEnvironment.temporaryDirectory("oci-netns")
        let image = try await OCITestImage.shared.reference()
        let make: [String: Any] = [
            "command": "make", "state_dir": state, "drone": DroneID.random().rawValue,
            "oci": ["runtime": binary, "shim": try TestExecutables.path("plane"), "network": "namespace", "subnet": "10.213.0.0/29"],
        ]
        try await driver.call(make)
        let first = BackendID.random().rawValue, second = BackendID.random().rawValue
        // Both on port 8080: each backend has its own namespace.
        let firstAddress = try await driver.call(["command": "start", "backend": first, "image": image, "port": 8080])["address"] as? String
        let secondAddress = try await driver.call(["command": "start", "backend": second, "image": image, "port": 8080])["address"] as? String
        #expect(firstAddress == "10.213.0.1:8080" && secondAddress == "10.213.0.3:8080")
        #expect(try await get(driver, "10.213.0.1:8080", "/") == "Hello World!", "the drone reaches the backend at its address")
        let environment = try JSONSerialization.jsonObject(with: Data(try await get(driver, "10.213.0.1:8080", "/env").utf8)) as? [String: String]
        #expect(environment?["PORT"] == "8080")
        #expect(try await namespaces(driver) == ["plane0ad50001", "plane0ad50003"])
        let inside = try await driver.run("/usr/sbin/ip", "-netns", "plane0ad50001", "-o", "-4", "addr", "show", "dev", "eth0")
        #expect(inside.output.contains("inet 10.213.0.1/31"), "\(inside.output)")

        // Cut off: the drone's loopback is not the backend's, and backends do not reach
        // each other (the drone's namespace does not forward).
        try await driver.call(["command": "listen", "port": 9099])
        #expect(try await get(driver, "10.213.0.1:8080", "/probe/connect/127.0.0.1/9099") == "error: ECONNREFUSED")
        #expect(try await get(driver, "10.213.0.1:8080", "/probe/connect/127.0.0.1/8080") == "connected", "its own loopback works")
        #expect(try await get(driver, "10.213.0.1:8080", "/probe/connect/10.213.0.3/8080").hasPrefix("error: "))
        #expect(try await get(driver, "10.213.0.1:8080", "/probe/connect/10.213.0.0/9099") == "error: ECONNREFUSED",
                "the drone's end of the link answers, but nothing listens there")

        // Each namespace the drone made is marked as its own.
        let owned = "\(state)/oci/networks"
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: owned)) == ["plane0ad50001", "plane0ad50003"])
        // "The drone restarts"; meanwhile a crash left one of its namespaces behind (made
        // and marked, its backend never recorded), and another drone sharing the subnet
        // made one of its own.
        try await driver.call(["command": "close"])
        #expect(try await driver.run("/usr/sbin/ip", "netns", "add", "plane0ad50005").status == 0)
        #expect(FileManager.default.createFile(atPath: "\(owned)/plane0ad50005", contents: nil))
        #expect(try await driver.run("/usr/sbin/ip", "netns", "add", "plane0ad50007").status == 0)
        try await driver.call(make)
        let listed = try await driver.call(["command": "list"])["backends"] as? [[String: String]] ?? []
        #expect(Set(listed.compactMap { $0["address"] }) == ["10.213.0.1:8080", "10.213.0.3:8080"], "addresses are kept across the restart")
        #expect(try await namespaces(driver) == ["plane0ad50001", "plane0ad50003", "plane0ad50007"], "its own orphan is gone, the other drone's stays")
        let third = BackendID.random().rawValue
        #expect(try await driver.call(["command": "start", "backend": third, "image": image, "port": 8080])["address"] as? String == "10.213.0.5:8080",
                "a new backend gets a free address")
        #expect(try await get(driver, "10.213.0.1:8080", "/") == "Hello World!", "the first backend still answers")

        // Removal takes the namespace and the drone's end of the link.
        try await driver.call(["command": "stop", "backend": first, "grace_ms": 2000])
        try await driver.call(["command": "remove", "backend": first])
        #expect(try await namespaces(driver) == ["plane0ad50003", "plane0ad50005", "plane0ad50007"])
        #expect(try await driver.run("/usr/sbin/ip", "link", "show", "plane0ad50001").status != 0)

        // The namespace of the subnet that is not this drone's is skipped, not taken over
        // or deleted.
        let fourth = BackendID.random().rawValue
        #expect(try await driver.call(["command": "start", "backend": fourth, "image": image, "port": 8080])["address"] as? String == "10.213.0.1:8080",
                "the next address (.7) is skipped; the freed .1 is used")
        #expect(try await namespaces(driver) == ["plane0ad50001", "plane0ad50003", "plane0ad50005", "plane0ad50007"])
        for backend in [second, third, fourth] {
            try await driver.call(["command": "stop", "backend": backend, "grace_ms": 2000])
            try await driver.call(["command": "remove", "backend": backend])
        }
        #expect(try await namespaces(driver) == ["plane0ad50007"], "the foreign namespace is left alone")
        #expect(try await driver.run("/usr/sbin/ip", "netns", "delete", "plane0ad50007").status == 0)
        #expect(try await namespaces(driver).isEmpty)
        let links = try await driver.run("/usr/sbin/ip", "-o", "link", "show")
        #expect(!links.output.contains("plane0ad5"), "\(links.output)")
    }

    /// A drone with no network settings: namespaces are the default, on 10.213.0.0/16, and
    /// backends reach neither each other nor the drone's loopback.
    @Test func namespacesAreTheDefault() async throws {
        let driver = try RuntimeDriverProcess()
        defer { driver.end() }
        let state = try TestEnvironment.temporaryDirectory("oci-netns-default")
        let image = try await OCITestImage.shared.reference()
        try await driver.call([
            "command": "make", "state_dir": state, "drone": DroneID.random().rawValue,
            "oci": ["runtime": "crun", "shim": try TestExecutables.path("plane")],
        ])
        let first = BackendID.random().rawValue, second = BackendID.random().rawValue
        let a = try await driver.call(["command": "start", "backend": first, "image": image, "port": 8080])["address"] as? String ?? ""
        let b = try await driver.call(["command": "start", "backend": second, "image": image, "port": 8080])["address"] as? String ?? ""
        #expect(a.hasPrefix("10.213.") && b.hasPrefix("10.213.") && a != b, "\(a) \(b)")
        try await driver.call(["command": "listen", "port": 9099])
        let bHost = b.split(separator: ":").first.map(String.init) ?? ""
        #expect(try await get(driver, a, "/probe/connect/\(bHost)/8080").hasPrefix("error: "), "a backend reached its neighbour")
        #expect(try await get(driver, a, "/probe/connect/127.0.0.1/9099") == "error: ECONNREFUSED", "the drone's loopback is not the backend's")
        for backend in [first, second] {
            try await driver.call(["command": "stop", "backend": backend, "grace_ms": 2000])
            try await driver.call(["command": "remove", "backend": backend])
        }
        #expect(try await namespaces(driver).isEmpty)
    }

    /// `egress`: with the default (`deny`) nothing from a backend is forwarded; with a list
    /// only connections to the listed networks leave (masqueraded); with `allow` all do;
    /// backends never reach each other. "Outside" is a namespace of this test's own inside
    /// the driver's (10.216.0.2 and .3, one listener on both); a drone restarted with
    /// another policy applies it to the backends it finds.
    @Test func egressPolicies() async throws {
        let driver = try RuntimeDriverProcess()
        defer { driver.end() }
        for argv in [["/bin/sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"], ["/usr/sbin/ip", "netns", "add", "pltout"],
                     ["/usr/sbin/ip", "link", "add", "pltout", "type", "veth", "peer", "name", "eth0", "netns", "pltout"],
                     ["/usr/sbin/ip", "addr", "add", "10.216.0.1/24", "dev", "pltout"], ["/usr/sbin/ip", "link", "set", "pltout", "up"],
                     ["/usr/sbin/ip", "-netns", "pltout", "addr", "add", "10.216.0.2/24", "dev", "eth0"],
                     ["/usr/sbin/ip", "-netns", "pltout", "addr", "add", "10.216.0.3/24", "dev", "eth0"],
                     ["/usr/sbin/ip", "-netns", "pltout", "link", "set", "eth0", "up"]] {
            let result = try await driver.run(argv)
            guard result.status == 0 else { throw RuntimeDriverProcess.Failure(description: "\(argv): \(result.output)") }
        }
        // The listener runs in the outside namespace, entered through the driver's (a child
        // of this test, ended by PID; not of the driver, whose commands wait for their output).
        let namespaces = "/proc/\(driver.process.processIdentifier)/ns"
        let listener = try ChildProcess("/usr/bin/nsenter", arguments: ["--net=\(namespaces)/net", "--mount=\(namespaces)/mnt", "ip", "netns", "exec", "pltout",
                                                                        "env", "PORT=8080", "HOST=0.0.0.0", try TestExecutables.path("plane-test-server")])
        defer { listener.signal(SIGKILL) }
        let state = try TestEnvironment.temporaryDirectory("oci-egress")
        let image = try await OCITestImage.shared.reference()
        func make(_ egress: Any?) async throws {
            var oci: [String: Any] = ["runtime": "crun", "shim": try TestExecutables.path("plane"), "subnet": "10.213.0.0/29"]
            if let egress { oci["egress"] = egress }
            try await driver.call(["command": "make", "state_dir": state, "drone": "egress-drone", "oci": oci])
        }
        func reaches(_ backend: String, _ host: String) async throws -> Bool {
            try await get(driver, backend, "/probe/connect/\(host)/8080") == "connected"
        }
        try await make(["10.216.0.2/32"])
        let first = BackendID.random().rawValue, second = BackendID.random().rawValue
        let a = try await driver.call(["command": "start", "backend": first, "image": image, "port": 8080])["address"] as? String ?? ""
        let b = try await driver.call(["command": "start", "backend": second, "image": image, "port": 8080])["address"] as? String ?? ""
        for _ in 0..<50 where !(try await reaches(a, "10.216.0.2")) { try await Task.sleep(for: .milliseconds(100)) }
        #expect(try await reaches(a, "10.216.0.2"), "the listed network is reachable")
        #expect(!(try await reaches(a, "10.216.0.3")), "an unlisted address is not")
        let aToB = try await reaches(a, "10.213.0.3"), bToA = try await reaches(b, "10.213.0.1")
        #expect(!aToB && !bToA, "backends do not reach each other")
        let rules = try await driver.run(["/usr/sbin/iptables", "-S", "PLANE-OCI-0AD50000-29"]).output
        #expect(rules.contains("-A PLANE-OCI-0AD50000-29 -d 10.216.0.2/32 -j ACCEPT"), "\(rules)")

        // Restarted with `allow`: everything out, still not each other.
        try await driver.call(["command": "close"])
        try await make("allow")
        let listed = try await reaches(a, "10.216.0.2"), unlisted = try await reaches(a, "10.216.0.3")
        #expect(listed && unlisted, "with allow, everything")
        #expect(!(try await reaches(a, "10.213.0.3")), "backends do not reach each other")

        // Restarted with the default: nothing out, for the running backends too; the chains
        // are gone.
        try await driver.call(["command": "close"])
        try await make(nil)
        let afterDeny = try await reaches(a, "10.216.0.2"), otherAfterDeny = try await reaches(b, "10.216.0.3")
        #expect(!afterDeny && !otherAfterDeny, "with deny, nothing, for backends started before too")
        #expect(try await driver.run(["/usr/sbin/iptables", "-S", "PLANE-OCI-0AD50000-29"]).status != 0)
        #expect(!(try await driver.run(["/usr/sbin/iptables", "-t", "nat", "-S", "POSTROUTING"]).output.contains("PLANE-NAT")))
        for backend in [first, second] {
            try await driver.call(["command": "stop", "backend": backend, "grace_ms": 2000])
            try await driver.call(["command": "remove", "backend": backend])
        }
    }
}
