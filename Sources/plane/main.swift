import PlaneCommands

await PlaneMain.run()
