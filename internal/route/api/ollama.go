package api

func (s *Server) registerOllama() {}
