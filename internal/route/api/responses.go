package api

func (s *Server) registerResponses() {}
