import Testing
@testable import PlaneCore

/// The TOML 1.0 reader of `controller.toml`, `drone.toml` and plugin manifests: every form
/// the files use, and malformed files as errors with a line and column, never a crash (the
/// C++ parser it replaces aborted on a table header `[` followed by a newline).
struct TOMLParserTests {
    @Test func documentsOfEveryForm() throws {
        let text = #"""
            # a comment
            cluster_domain = "plane.test"   # trailing comment
            "quoted key" = 'literal \n kept'
            numbers = [1_000, -2, +3, 0x1F, 0o17, 0b101, 1.5, -2e3, 6.25E-1, inf, -inf]
            nested = [[1, 2], ["a", 'b'], { x = 1 }, ]
            multi = """
            line one \
              continued
            "quoted" ""inside"""
            raw = '''
            C:\path\'''
            when = 2026-12-05T10:00:00.5+01:00
            day = 2026-12-05
            at = 10:00:00
            spaced = 2026-12-05 10:00:00Z
            escapes = "tab\tquote\" \u00e9 \U0001F600"

            [nats]
            hosts = ["nats://127.0.0.1:4222",
                     "tls://127.0.0.2", # comments in arrays
            ]
            auth = { token = "t", nested.deep = true }

            [agent.oci]
            network = "namespace"

            [[agent.extra]]
            name = "one"
            [[agent.extra]]
            name = "two"
            [agent.extra.sub]
            x = 1

            [fruit]
            apple.color = "red"
            apple.taste.sweet = true
            [fruit.apple.texture]
            smooth = true
            """#
        let table = try TOMLParser.parse(text)
        #expect(table.keys == ["cluster_domain", "quoted key", "numbers", "nested", "multi", "raw", "when", "day", "at", "spaced", "escapes", "nats", "agent", "fruit"])
        #expect(table["cluster_domain"] == .string("plane.test"))
        #expect(table["quoted key"] == .string("literal \\n kept"))
        #expect(table["numbers"] == .array([.integer(1000), .integer(-2), .integer(3), .integer(31), .integer(15), .integer(5), .float(1.5), .float(-2000),
                                            .float(0.625), .float(.infinity), .float(-.infinity)]))
        #expect(table["nested"] == .array([.array([.integer(1), .integer(2)]), .array([.string("a"), .string("b")]), .table(ConfigTable([("x", .integer(1))]))]))
        #expect(table["multi"] == .string("line one continued\n\"quoted\" \"\"inside"))
        #expect(table["raw"] == .string("C:\\path\\"))
        #expect(table["when"] == .dateTime("2026-12-05T10:00:00.5+01:00") && table["day"] == .dateTime("2026-12-05"))
        #expect(table["at"] == .dateTime("10:00:00") && table["spaced"] == .dateTime("2026-12-05 10:00:00Z"))
        #expect(table["escapes"] == .string("tab\tquote\" é 😀"))
        guard case .table(let nats) = table["nats"], case .table(let agent) = table["agent"], case .table(let fruit) = table["fruit"] else {
            Issue.record("tables missing")
            return
        }
        #expect(nats["hosts"] == .array([.string("nats://127.0.0.1:4222"), .string("tls://127.0.0.2")]))
        #expect(nats["auth"] == .table(ConfigTable([("token", .string("t")), ("nested", .table(ConfigTable([("deep", .boolean(true))])))])))
        #expect(agent["oci"] == .table(ConfigTable([("network", .string("namespace"))])))
        #expect(agent["extra"] == .array([.table(ConfigTable([("name", .string("one"))])),
                                          .table(ConfigTable([("name", .string("two")), ("sub", .table(ConfigTable([("x", .integer(1))])))]))]))
        guard case .table(let apple) = fruit["apple"] else { Issue.record("no apple"); return }
        #expect(apple.keys == ["color", "taste", "texture"])
        #expect(try TOMLParser.parse("") == ConfigTable())
        #expect(try TOMLParser.parse("a = 1\r\nb = 'x'\r\n") == ConfigTable([("a", .integer(1)), ("b", .string("x"))]))
        if case .float(let value) = try TOMLParser.parse("x = nan")["x"] { #expect(value.isNaN) } else { Issue.record("nan") }
    }

    @Test(arguments: [
        ("[\nx = 1", 1), ("[[\nx = 1", 1), ("[a\nb = 1", 1), ("x = ", 1), ("x", 1), ("= 1", 1), ("x = 1 2", 1), ("x = 1\nx = 2", 2),
        ("[a]\n[a]", 2), ("a = 1\n[a]", 2), ("[[a]]\n[a]", 2), ("[a]\n[[a]]", 2), ("x = {a = 1}\n[x]", 2), ("x = {a = 1}\n[x.b]", 2),
        ("x = [{a = 1}]\n[[x]]", 2), ("[a.b.c]\nz = 1\n[a]\nb.c.t = 2", 4), ("x = {a = 1,}", 1), ("x = {a = 1\n}", 1), ("x = [1 2]", 1),
        ("x = [1,", 1), ("x = \"unterminated", 1), ("x = \"bad \\q escape\"", 1), ("x = \"\\uD800\"", 1), ("x = \"\\u12\"", 1),
        ("x = 'a\u{1}b'", 1), ("x = \"\"\"open", 1), ("x = 01", 1), ("x = 1__0", 1), ("x = _1", 1), ("x = 1_", 1), ("x = 0x", 1),
        ("x = +0x10", 1), ("x = 9223372036854775808", 1), ("x = 1.", 1), ("x = .5", 1), ("x = 1e", 1), ("x = 03.5", 1), ("x = tru", 1),
        ("x = 2026-13", 1), ("x = 10:00", 1), ("x = abc", 1), ("x = 1\ry = 2", 1), ("# \u{1} control", 1), ("a.b = 1\na.b.c = 2", 2),
        ("x = \"\"\"a\"\"\"\"\"\"", 1),
    ])
    func malformedFilesAreErrorsWithAPosition(text: String, line: Int) {
        #expect { _ = try TOMLParser.parse(text) } throws: { ($0 as? TOMLParser.SyntaxError)?.line == line }
    }

    @Test func nestingIsBounded() {
        let deep = "x = " + String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect { _ = try TOMLParser.parse(deep) } throws: { ($0 as? TOMLParser.SyntaxError)?.message.contains("nested") == true }
        let inline = "x = " + String(repeating: "{ a = ", count: 70) + "1" + String(repeating: " }", count: 70)
        #expect(throws: TOMLParser.SyntaxError.self) { try TOMLParser.parse(inline) }
        let fine = "x = " + String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try TOMLParser.parse(fine) }
    }
}
