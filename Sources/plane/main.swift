import PlaneCommands

PlaneMain.main()
